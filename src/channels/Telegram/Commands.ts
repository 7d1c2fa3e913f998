/**
 * Chat commands: parsing a leading `/command[@bot] args`, and the command list (the built-in /start, /new and
 * /help, which the channel's own commands may override).
 */
import { Effect } from "effect"
import type { ChannelCommand, ChannelContext } from "../../core/Channel.js"

/** A leading `/command[@bot] args`. */
export interface ParsedCommand {
  readonly name: string
  readonly args: string
  /** The `@bot` suffix, if any, lower-cased. */
  readonly target: string | undefined
}

export const parseCommand = (text: string): ParsedCommand | undefined => {
  const match = /^\/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+([\s\S]*))?$/.exec(text.trim())
  if (match === null) return undefined
  return { name: match[1]!.toLowerCase(), args: (match[3] ?? "").trim(), target: match[2]?.toLowerCase() }
}

const defaultStart = "Hi! Send me a message and I'll answer. /new starts a new conversation, /help lists the commands."

export interface Options {
  /** Commands besides /start, /new and /help; they may override those. */
  readonly commands?: ReadonlyArray<ChannelCommand> | undefined
  readonly startText?: string | undefined
  readonly helpText?: string | undefined
}

/** The channel's commands: its own first, then the built-ins it does not override. */
export const make = (ctx: ChannelContext, options: Options): ReadonlyArray<ChannelCommand> => {
  const builtins: ReadonlyArray<ChannelCommand> = [
    {
      name: "start",
      description: "Start talking to the bot",
      handle: (c) => c.reply(options.startText ?? defaultStart)
    },
    {
      name: "new",
      description: "Start a new conversation",
      handle: (c) =>
        Effect.zipRight(
          ctx.resetSession(c.request.session!.isolationKey),
          c.reply("Started a new conversation. Earlier messages are forgotten.")
        )
    },
    {
      name: "help",
      description: "List the commands",
      handle: (c) => c.reply(options.helpText ?? commandList())
    }
  ]
  const custom = options.commands ?? []
  const commands = [...custom, ...builtins.filter((b) => !custom.some((c) => c.name === b.name))]
  const commandList = () => ["Commands:", ...commands.map((c) => `/${c.name} - ${c.description}`)].join("\n")
  return commands
}
