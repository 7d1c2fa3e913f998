/**
 * Slash commands: what the channel registers (`/ask <prompt>`, `/reset`, `/help`, and the channel's own
 * commands with an optional `text` argument), and their registration at startup with the bulk-overwrite route
 * `PUT /applications/{id}/commands`. Registration reads the current list first and writes only when it differs,
 * so restarts do not rewrite (and re-propagate) unchanged commands.
 */
import { Effect } from "effect"
import type { ChannelCommand } from "../../core/Channel.js"
import type { Api, ApiError } from "./Api.js"

/** Application command option types used here. */
export const OptionType = { string: 3 } as const

export interface CommandOption {
  readonly type: number
  readonly name: string
  readonly description: string
  readonly required: boolean
}

/** A CHAT_INPUT (slash) command as registered. */
export interface SlashCommand {
  readonly name: string
  readonly description: string
  readonly options: ReadonlyArray<CommandOption>
}

const NAME = /^[-_a-z0-9]{1,32}$/

/** The commands to register: the built-ins, then the channel's own (which may not reuse a built-in's name). */
export const definitions = (commands: ReadonlyArray<ChannelCommand>): ReadonlyArray<SlashCommand> => [
  {
    name: "ask",
    description: "Ask the agent",
    options: [{ type: OptionType.string, name: "prompt", description: "What to ask", required: true }]
  },
  { name: "reset", description: "Start a new conversation in this channel", options: [] },
  { name: "help", description: "How to talk to the agent", options: [] },
  ...commands.filter((c) => !["ask", "reset", "help"].includes(c.name)).map((c) => ({
    name: c.name,
    description: c.description.slice(0, 100),
    options: [{ type: OptionType.string, name: "text", description: "Arguments", required: false }]
  }))
]

/** Why a command cannot be registered (Discord's naming rules), or undefined. */
export const problem = (commands: ReadonlyArray<SlashCommand>): string | undefined => {
  for (const command of commands) {
    if (!NAME.test(command.name)) {
      return `the command name "${command.name}" is not valid on Discord (1-32 of a-z, 0-9, - or _)`
    }
    if (command.description.length === 0) return `the command "${command.name}" needs a description`
  }
  return undefined
}

const asRecord = (value: unknown): Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value) ? value as Record<string, unknown> : {}

/** The fields this channel sets, from a command Discord returned (its defaults filled in), to compare. */
const normalize = (raw: unknown): SlashCommand & { readonly type: number } => {
  const record = asRecord(raw)
  const options = Array.isArray(record.options) ? record.options : []
  return {
    type: typeof record.type === "number" ? record.type : 1,
    name: String(record.name ?? ""),
    description: String(record.description ?? ""),
    options: options.map((option) => {
      const o = asRecord(option)
      return {
        type: Number(o.type),
        name: String(o.name ?? ""),
        description: String(o.description ?? ""),
        required: o.required === true
      }
    })
  }
}

const canonical = (commands: ReadonlyArray<unknown>): string =>
  JSON.stringify(commands.map(normalize).sort((a, b) => a.name.localeCompare(b.name)))

/** Registers `commands` unless Discord already has exactly these; true when it wrote them. */
export const register = (
  api: Api,
  applicationId: string,
  commands: ReadonlyArray<SlashCommand>
): Effect.Effect<boolean, ApiError> =>
  Effect.gen(function*() {
    const path = `/applications/${applicationId}/commands`
    const current = yield* api.request("GET", path, { auth: true })
    const desired = commands.map((c) => ({ type: 1, ...c }))
    if (Array.isArray(current) && canonical(current) === canonical(desired)) return false
    yield* api.request("PUT", path, { auth: true, body: desired })
    return true
  }).pipe(Effect.withSpan("Discord.Commands.register"))
