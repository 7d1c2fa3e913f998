/**
 * From a Telegram update to what the chat gets: the session key and identity of a chat (or forum topic), group
 * addressing (a mention or a reply to the bot), commands run in place, and everything else as a turn
 * (`ChannelRequest`) whose reply `Replies` renders.
 */
import type { Ref } from "effect"
import { Effect, Either, Schema } from "effect"
import type { ChannelCommand, ChannelContext, CommandContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { Content } from "../../domain/Content.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import type { ChannelName } from "../../domain/Ids.js"
import { IsolationKey } from "../../domain/Ids.js"
import { userMessage } from "../../domain/Message.js"
import type * as BotApi from "./BotApi.js"
import { parseCommand } from "./Commands.js"
import { fetchMedia, mediaOf } from "./Media.js"
import type { ChatTarget, Replies } from "./Replies.js"
import type { CallbackQuery, Message, MessageEntity, Update, User } from "./Updates.js"

/** The session key of a chat, or of a forum topic in it. */
export const isolationKey = (chatId: number | string, threadId?: number, prefix = "telegram"): string =>
  threadId === undefined ? `${prefix}:${chatId}` : `${prefix}:${chatId}:${threadId}`

/** The bot as getMe describes it; its username decides whether a group message or command addresses it. */
export interface BotInfo {
  readonly id: number
  readonly username: string
}

const mentions = (text: string, entities: ReadonlyArray<MessageEntity>, bot: BotInfo): boolean => {
  for (const entity of entities) {
    if (entity.type === "text_mention" && entity.user?.id === bot.id) return true
    if (entity.type === "mention") {
      const mention = text.slice(entity.offset, entity.offset + entity.length)
      if (mention.toLowerCase() === `@${bot.username.toLowerCase()}`) return true
    }
  }
  // Entities are absent in some clients' captions; fall back to the text itself.
  return bot.username.length > 0 && text.toLowerCase().includes(`@${bot.username.toLowerCase()}`)
}

const stripMention = (text: string, bot: BotInfo): string => {
  if (bot.username.length === 0) return text
  const pattern = new RegExp(`@${bot.username.replace(/[^A-Za-z0-9_]/g, "")}\\b`, "gi")
  return text.replace(pattern, "").replace(/\s{2,}/g, " ").trim()
}

/** The chat (or forum topic) an update belongs to: its session key and where replies go. */
export interface Chat {
  readonly key: IsolationKey
  readonly target: ChatTarget
}

const decodeKey = Schema.decodeEither(IsolationKey)

export interface Options {
  /** Channel name (decoded) and session key prefix. */
  readonly name: ChannelName
  /** Whether turns stream (edits of one message). */
  readonly streaming: boolean
  readonly maxMediaBytes: number
}

export interface Inbound {
  /**
   * The chat the update belongs to; none when it has no chat (a callback query on an inaccessible message, an
   * update kind the channel does not handle), and a failure when its key is not a valid isolation key.
   */
  readonly chatOf: (update: Update) => Either.Either<Chat | undefined, string>
  /**
   * Handles one update of `chat` (from `chatOf`): a command, a turn, or nothing (not addressed to the bot, not a
   * kind it handles).
   */
  readonly handleUpdate: (update: Update, raw: unknown, chat: Chat | undefined) => Effect.Effect<void>
}

export const make = (deps: {
  readonly api: BotApi.BotApi
  readonly ctx: ChannelContext
  readonly replies: Replies
  readonly commands: ReadonlyArray<ChannelCommand>
  readonly bot: Ref.Ref<BotInfo>
}, options: Options): Inbound => {
  const { api, commands, replies } = deps
  const name = options.name

  const identityOf = (chatId: number, threadId: number | undefined, from: User | undefined): ChannelIdentity => ({
    channel: name,
    nativeId: String(chatId),
    attributes: {
      ...(from === undefined ? {} : { user_id: from.id }),
      ...(from?.username === undefined ? {} : { username: from.username }),
      ...(threadId === undefined ? {} : { message_thread_id: threadId })
    }
  })

  const handleMessage = (message: Message, raw: unknown, { key, target }: Chat) =>
    Effect.gen(function*() {
      const chat = message.chat
      if (chat.type === "channel") return
      const bot = yield* deps.bot
      const isGroup = chat.type === "group" || chat.type === "supergroup"
      const threadId = target.threadId
      const rawText = message.text !== undefined && message.text.length > 0 ? message.text : message.caption ?? ""
      const entities = message.entities ?? message.caption_entities ?? []
      const identity = identityOf(chat.id, threadId, message.from)
      const attributes = {
        chat_id: chat.id,
        message_id: message.message_id,
        ...(message.from === undefined ? {} : { user_id: message.from.id }),
        ...(threadId === undefined ? {} : { message_thread_id: threadId })
      }

      const command = parseCommand(rawText)
      if (command?.target !== undefined && command.target !== bot.username.toLowerCase()) return
      const known = command === undefined ? undefined : commands.find((c) => c.name === command.name)
      if (command !== undefined && known !== undefined) {
        const request: ChannelRequest = {
          channel: name,
          operation: "command.invoke",
          input: [userMessage(rawText)],
          session: { isolationKey: key },
          identity,
          attributes: { ...attributes, command: command.name },
          stream: false
        }
        const context: CommandContext = { request, args: command.args, reply: (text) => replies.say(target, text) }
        return yield* known.handle(context)
      }

      if (isGroup) {
        const addressed = mentions(rawText, entities, bot) ||
          (message.reply_to_message?.from?.id !== undefined && message.reply_to_message.from.id === bot.id) ||
          command?.target !== undefined
        if (!addressed) return
      }
      const text = isGroup ? stripMention(rawText, bot) : rawText
      const media = mediaOf(message)
      if (text.length === 0 && media === undefined) return
      const contents: Array<Content> = []
      if (text.length > 0) contents.push({ _tag: "text", text })
      if (media !== undefined) contents.push(yield* fetchMedia(api, media, options.maxMediaBytes))
      const request: ChannelRequest = {
        channel: name,
        operation: "message.create",
        input: [{
          role: "user",
          contents,
          ...(message.from?.first_name === undefined ? {} : { authorName: message.from.first_name })
        }],
        session: { isolationKey: key },
        identity,
        attributes,
        stream: options.streaming
      }
      yield* replies.answer(request, raw, target)
    })

  const handleCallback = (query: CallbackQuery, raw: unknown, chat: Chat | undefined) =>
    Effect.gen(function*() {
      yield* api.call("answerCallbackQuery", { callback_query_id: query.id }, Schema.Unknown).pipe(
        Effect.catchAll((error) => Effect.logWarning("answerCallbackQuery failed", error.message))
      )
      const message = query.message
      if (chat === undefined || message === undefined || query.data === undefined || query.data.length === 0) return
      const threadId = chat.target.threadId
      const request: ChannelRequest = {
        channel: name,
        operation: "message.create",
        input: [userMessage(query.data)],
        session: { isolationKey: chat.key },
        identity: identityOf(message.chat.id, threadId, query.from),
        attributes: {
          chat_id: message.chat.id,
          callback_query_id: query.id,
          user_id: query.from.id,
          ...(threadId === undefined ? {} : { message_thread_id: threadId })
        },
        stream: options.streaming
      }
      yield* replies.answer(request, raw, chat.target)
    })

  const handleUpdate = (update: Update, raw: unknown, chat: Chat | undefined): Effect.Effect<void> => {
    if (update.callback_query !== undefined) return handleCallback(update.callback_query, raw, chat)
    const message = update.message ?? update.edited_message
    if (message !== undefined && chat !== undefined) return handleMessage(message, raw, chat)
    return Effect.void
  }

  const chatOf = (update: Update): Either.Either<Chat | undefined, string> => {
    const message = update.message ?? update.edited_message ?? update.callback_query?.message
    if (message === undefined) return Either.right(undefined)
    const threadId = message.is_topic_message === true ? message.message_thread_id : undefined
    return decodeKey(isolationKey(message.chat.id, threadId, name)).pipe(
      Either.map((key): Chat => ({ key, target: { chatId: message.chat.id, threadId } })),
      Either.mapLeft((error) => error.message)
    )
  }

  return { chatOf, handleUpdate }
}
