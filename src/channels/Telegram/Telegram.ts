/**
 * The Telegram channel: a bot answering private chats, groups (when mentioned or replied to) and forum topics,
 * over a webhook (`POST /telegram/webhook`) or long polling. Each chat (or topic) is one session,
 * `telegram:<chat_id>[:<thread_id>]`; updates of one chat are handled strictly in order, chats in parallel.
 *
 * Unlike the Python reference it replaces, long replies are split rather than truncated, Bot API failures are
 * retried (429 honours retry_after) or classified for the push runner, and media reaches the model as bytes,
 * never as a file URL carrying the bot token.
 */
import type { ConfigError } from "effect"
import {
  Config,
  Deferred,
  Duration,
  Effect,
  Fiber,
  FiberSet,
  Option,
  Queue,
  Redacted,
  Schedule,
  Schema,
  Stream
} from "effect"
import * as Crypto from "node:crypto"
import type {
  Channel,
  ChannelCommand,
  ChannelContext,
  ChannelHooks,
  CommandContext,
  PushFailure,
  Route
} from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { ChannelRequest, HostedRunResult } from "../../domain/ChannelRequest.js"
import type { Content, DataContent, UriContent } from "../../domain/Content.js"
import { ChannelStartupError } from "../../domain/Errors.js"
import type { TurnError } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import type { ChannelName, IsolationKey } from "../../domain/Ids.js"
import { userMessage } from "../../domain/Message.js"
import { describeBodyError, errorJson, json, readJson } from "../../http/HttpBody.js"
import type { BotApiError } from "./BotApi.js"
import * as BotApi from "./BotApi.js"
import type { Reply } from "./Render.js"
import { isBlank, replyOf, splitText, turnErrorText } from "./Render.js"
import type { CallbackQuery, Message, MessageEntity, Update } from "./Updates.js"
import { allowedUpdates, decodeUpdate, File, SentMessage, User } from "./Updates.js"

export type ParseMode = "MarkdownV2" | "HTML" | "Markdown"

export interface Options {
  readonly token: Redacted.Redacted<string> | string
  /** Channel name, route prefix and session key prefix (default "telegram"). */
  readonly name?: string
  /** Default https://api.telegram.org. */
  readonly apiBase?: string
  /** `auto` (default): webhook when `webhookUrl` is set, else polling. */
  readonly transport?: "auto" | "polling" | "webhook"
  /** The public URL Telegram posts updates to (it must reach `POST <path>/webhook`). */
  readonly webhookUrl?: string
  /** Required in webhook mode: Telegram echoes it in `X-Telegram-Bot-Api-Secret-Token`. */
  readonly secretToken?: Redacted.Redacted<string> | string
  /** Off by default: a rolling redeploy would otherwise unregister the new instance's webhook. */
  readonly deleteWebhookOnShutdown?: boolean
  /** Route prefix (default "/telegram"). */
  readonly path?: string
  /** parse_mode of final replies; streaming edits are always plain text. */
  readonly parseMode?: ParseMode
  /** Stream replies by editing one message (default true). */
  readonly stream?: boolean
  /** Least time between two streaming edits (default 400 ms). */
  readonly streamEditInterval?: Duration.DurationInput
  /** How often the typing indicator is renewed while the agent works (default 4 s; Telegram shows it 5 s). */
  readonly typingInterval?: Duration.DurationInput
  readonly sendTypingAction?: boolean
  /** Long-poll timeout in seconds (default 30). */
  readonly pollingTimeoutSeconds?: number
  /** Delays between failed getUpdates calls (default exponential from 1 s, at most 30 s). */
  readonly pollingBackoff?: Schedule.Schedule<unknown, unknown>
  /** Commands besides /start, /new and /help; they may override those. */
  readonly commands?: ReadonlyArray<ChannelCommand>
  /** Register the commands with setMyCommands at startup (default true). */
  readonly registerCommands?: boolean
  /** Largest media file passed to the agent, in bytes (default 10 MiB; Telegram serves at most 20 MB). */
  readonly maxMediaBytes?: number
  readonly startText?: string
  readonly helpText?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

interface ChatTarget {
  readonly chatId: number | string
  readonly threadId: number | undefined
  readonly silent?: boolean
}

/** The session key of a chat, or of a forum topic in it. */
export const isolationKey = (chatId: number | string, threadId?: number, prefix = "telegram"): string =>
  threadId === undefined ? `${prefix}:${chatId}` : `${prefix}:${chatId}:${threadId}`

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

interface BotInfo {
  readonly id: number
  readonly username: string
}

interface Media {
  readonly kind: string
  readonly fileId: string
  readonly fileSize: number | undefined
  readonly mediaType: string
  readonly name: string | undefined
}

const mediaOf = (message: Message): Media | undefined => {
  const photo = message.photo?.[message.photo.length - 1]
  if (photo !== undefined) {
    return { kind: "photo", fileId: photo.file_id, fileSize: photo.file_size, mediaType: "image/jpeg", name: undefined }
  }
  const pick = [
    ["document", message.document, "application/octet-stream"],
    ["voice message", message.voice, "audio/ogg"],
    ["audio file", message.audio, "audio/mpeg"],
    ["video", message.video, "video/mp4"]
  ] as const
  for (const [kind, file, fallback] of pick) {
    if (file === undefined) continue
    return {
      kind,
      fileId: file.file_id,
      fileSize: file.file_size,
      mediaType: file.mime_type ?? fallback,
      name: file.file_name
    }
  }
  return undefined
}

const toPushFailure = (error: BotApiError): PushFailure => {
  const wait = BotApi.retryAfterMillis(error)
  return {
    _tag: "PushFailure",
    retryable: BotApi.isRetryable(error),
    ...(wait === undefined ? {} : { retryAfterMillis: wait }),
    message: error.message
  }
}

const sha256 = (value: string) => Crypto.createHash("sha256").update(value).digest()

const SECRET_PATTERN = /^[A-Za-z0-9_-]{1,256}$/

const defaultStart = "Hi! Send me a message and I'll answer. /new starts a new conversation, /help lists the commands."

export const make = (options: Options): Channel => {
  const name = options.name ?? "telegram"
  const token = typeof options.token === "string" ? Redacted.make(options.token) : options.token
  const secret = options.secretToken === undefined ?
    undefined :
    Redacted.value(typeof options.secretToken === "string" ? Redacted.make(options.secretToken) : options.secretToken)
  const mode: "polling" | "webhook" = options.transport === "webhook" ||
      (options.transport !== "polling" && options.webhookUrl !== undefined) ?
    "webhook" :
    "polling"
  const streaming = options.stream ?? true
  const editInterval = Duration.decode(options.streamEditInterval ?? "400 millis")
  const typingInterval = Duration.decode(options.typingInterval ?? "4 seconds")
  const pollingTimeout = options.pollingTimeoutSeconds ?? 30
  const maxMediaBytes = options.maxMediaBytes ?? 10 * 1024 * 1024
  const parseMode = options.parseMode
  const pollingBackoff = options.pollingBackoff ??
    Schedule.exponential("1 second", 2).pipe(Schedule.union(Schedule.spaced("30 seconds")))

  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const api = BotApi.make({ token, ...(options.apiBase === undefined ? {} : { apiBase: options.apiBase }) })
      const fibers = yield* FiberSet.make()
      const seenNamespace = `telegram:${api.botId}`
      const cursorName = `telegram:${api.botId}:offset`
      let bot: BotInfo = { id: Number(api.botId), username: "" }
      // Parts of a push already delivered, per idempotency key, so a retried push does not repeat them.
      const pushProgress = new Map<string, number>()

      const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.annotateLogs(effect, { channel: name })

      // ---- sending -------------------------------------------------------------------------------------------

      const baseParams = (target: ChatTarget) => ({
        chat_id: target.chatId,
        ...(target.threadId === undefined ? {} : { message_thread_id: target.threadId }),
        ...(target.silent === true ? { disable_notification: true } : {})
      })

      const retrying = <A>(effect: Effect.Effect<A, BotApiError>, retry: boolean) =>
        retry ? BotApi.withRetry(effect) : effect

      /** sendMessage; when Telegram cannot parse the formatting, the same text again as plain text. */
      const sendText = (
        target: ChatTarget,
        text: string,
        mode: ParseMode | undefined,
        retry: boolean
      ): Effect.Effect<SentMessage, BotApiError> =>
        retrying(
          api.call(
            "sendMessage",
            { ...baseParams(target), text, ...(mode === undefined ? {} : { parse_mode: mode }) },
            SentMessage
          ),
          retry
        ).pipe(
          Effect.catchIf(
            (error) => mode !== undefined && BotApi.isParseEntitiesError(error),
            () => sendText(target, text, undefined, retry)
          )
        )

      const editText = (
        target: ChatTarget,
        messageId: number,
        text: string,
        mode: ParseMode | undefined,
        retry: boolean
      ): Effect.Effect<void, BotApiError> =>
        retrying(
          api.call(
            "editMessageText",
            {
              chat_id: target.chatId,
              message_id: messageId,
              text,
              ...(mode === undefined ? {} : { parse_mode: mode })
            },
            Schema.Unknown
          ),
          retry
        ).pipe(
          Effect.asVoid,
          Effect.catchIf(BotApi.isNotModified, () => Effect.void),
          Effect.catchIf(
            (error) => mode !== undefined && BotApi.isParseEntitiesError(error),
            () => editText(target, messageId, text, undefined, retry)
          )
        )

      const sendImage = (target: ChatTarget, image: DataContent | UriContent, retry: boolean) => {
        if (image._tag === "uri") {
          return retrying(api.call("sendPhoto", { ...baseParams(target), photo: image.uri }, Schema.Unknown), retry)
        }
        return Effect.suspend(() => {
          const form = new FormData()
          for (const [key, value] of Object.entries(baseParams(target))) form.append(key, String(value))
          const bytes = Buffer.from(image.data, "base64")
          form.append("photo", new Blob([bytes], { type: image.mediaType }), image.name ?? "image")
          return retrying(api.callMultipart("sendPhoto", form), retry)
        })
      }

      /** The parts of a reply, in order: images, then the text in chunks (or a placeholder when empty). */
      const replyParts = (reply: Reply): ReadonlyArray<DataContent | UriContent | string> => {
        const chunks = splitText(reply.text).filter((chunk) => !isBlank(chunk))
        if (chunks.length === 0 && reply.images.length === 0) return ["(no response)"]
        return [...reply.images, ...chunks]
      }

      const sendPart = (target: ChatTarget, part: DataContent | UriContent | string, retry: boolean) =>
        typeof part === "string" ? sendText(target, part, parseMode, retry) : sendImage(target, part, retry)

      const sendReply = (target: ChatTarget, reply: Reply) =>
        Effect.forEach(replyParts(reply), (part) => sendPart(target, part, true), { discard: true })

      const logSendFailure = (error: BotApiError) => Effect.logWarning("could not send to the chat", error.message)

      const say = (target: ChatTarget, text: string) =>
        Effect.forEach(splitText(text), (chunk) => sendText(target, chunk, undefined, true), { discard: true }).pipe(
          Effect.catchAll(logSendFailure)
        )

      const typingLoop = (target: ChatTarget) =>
        api.call(
          "sendChatAction",
          {
            chat_id: target.chatId,
            action: "typing",
            ...(target.threadId === undefined ? {} : { message_thread_id: target.threadId })
          },
          Schema.Unknown,
          { timeout: "10 seconds" }
        ).pipe(Effect.ignore, Effect.repeat(Schedule.spaced(typingInterval)))

      const withTyping = (target: ChatTarget) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
        options.sendTypingAction === false ?
          effect :
          // Forked interruptible: a fiber forked in `acquire` would inherit its uninterruptibility.
          Effect.acquireUseRelease(Effect.fork(Effect.interruptible(typingLoop(target))), () => effect, Fiber.interrupt)

      const replyError = (target: ChatTarget, error: TurnError) =>
        Effect.zipRight(
          Effect.logInfo("turn refused or failed", error._tag),
          say(target, turnErrorText(error))
        )

      // ---- turns ---------------------------------------------------------------------------------------------

      const runOnce = (request: ChannelRequest, raw: unknown, target: ChatTarget) =>
        ctx.run(request, raw).pipe(
          withTyping(target),
          Effect.matchEffect({
            onFailure: (error) => replyError(target, error),
            onSuccess: ({ originating }) =>
              Option.isNone(originating) ?
                Effect.void :
                sendReply(target, replyOf(originating.value.response)).pipe(Effect.catchAll(logSendFailure))
          })
        )

      const runStreaming = (request: ChannelRequest, raw: unknown, target: ChatTarget) =>
        Effect.gen(function*() {
          const started = yield* Effect.either(ctx.runStream(request, raw))
          if (started._tag === "Left") return yield* replyError(target, started.left)
          const turn = started.right
          const state = { text: "", shown: "", messageId: undefined as number | undefined }
          const changed = yield* Queue.sliding<void>(1)
          // One interim edit, plain text, no retry: a failed edit is superseded by the next one. Uninterruptible so
          // stopping the editor never abandons a sendMessage whose message id we would then not know.
          const showInterim = Effect.suspend(() => {
            const display = splitText(state.text)[0] ?? ""
            if (isBlank(display) || display === state.shown) return Effect.void
            const op = state.messageId === undefined ?
              Effect.map(sendText(target, display, undefined, false), (sent) => {
                state.messageId = sent.message_id
              }) :
              editText(target, state.messageId, display, undefined, false)
            return op.pipe(
              Effect.tap(() => {
                state.shown = display
              }),
              Effect.catchAll((error) => Effect.logDebug("streaming edit failed", error.message))
            )
          }).pipe(Effect.uninterruptible)
          const editor = yield* Effect.fork(
            Effect.forever(Effect.zipRight(Effect.zipRight(changed.take, showInterim), Effect.sleep(editInterval)))
          )
          const streamed = yield* Stream.runForEach(turn.updates, (update) => {
            if (update.role !== undefined && update.role !== "assistant") return Effect.void
            let delta = ""
            for (const part of update.contents) if (part._tag === "text") delta += part.text
            if (delta.length === 0) return Effect.void
            state.text += delta
            return changed.offer(undefined)
          }).pipe(withTyping(target), Effect.either)
          yield* Fiber.interrupt(editor)
          const outcome = streamed._tag === "Left" ? streamed : yield* Effect.either(turn.result)
          if (outcome._tag === "Left") return yield* replyError(target, outcome.left)
          const shaped = outcome.right.originating
          if (Option.isNone(shaped)) return
          const reply = replyOf(shaped.value.response)
          const messageId = state.messageId
          if (messageId === undefined) return yield* sendReply(target, reply).pipe(Effect.catchAll(logSendFailure))
          // The streamed message becomes the first chunk, now with the parse mode; the rest follow it.
          const parts = replyParts(reply)
          const texts = parts.filter((p): p is string => typeof p === "string")
          const images = parts.filter((p): p is DataContent | UriContent => typeof p !== "string")
          const [first, ...rest] = texts.length === 0 ? [""] : texts
          yield* Effect.gen(function*() {
            if (first !== undefined && first.length > 0 && (first !== state.shown || parseMode !== undefined)) {
              yield* editText(target, messageId, first, parseMode, true)
            }
            for (const chunk of rest) yield* sendText(target, chunk, parseMode, true)
            for (const image of images) yield* sendImage(target, image, true)
          }).pipe(Effect.catchAll(logSendFailure))
        })

      const dispatch = (request: ChannelRequest, raw: unknown, target: ChatTarget) =>
        request.stream ? runStreaming(request, raw, target) : runOnce(request, raw, target)

      // ---- commands ------------------------------------------------------------------------------------------

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

      // ---- updates -------------------------------------------------------------------------------------------

      const identityOf = (chatId: number, threadId: number | undefined, from: User | undefined): ChannelIdentity => ({
        channel: name as ChannelName,
        nativeId: String(chatId),
        attributes: {
          ...(from === undefined ? {} : { user_id: from.id }),
          ...(from?.username === undefined ? {} : { username: from.username }),
          ...(threadId === undefined ? {} : { message_thread_id: threadId })
        }
      })

      const fetchMedia = (media: Media): Effect.Effect<Content> => {
        const note = (reason: string): Content => ({
          _tag: "text",
          text: `[The user sent a ${media.kind} that could not be loaded: ${reason}.]`
        })
        const tooLarge = note(`it is larger than ${Math.floor(maxMediaBytes / 1024 / 1024)} MB`)
        if (media.fileSize !== undefined && media.fileSize > maxMediaBytes) return Effect.succeed(tooLarge)
        return Effect.gen(function*() {
          const file = yield* BotApi.withRetry(api.call("getFile", { file_id: media.fileId }, File))
          if (file.file_size !== undefined && file.file_size > maxMediaBytes) return tooLarge
          if (file.file_path === undefined) return note("Telegram did not provide the file")
          const bytes = yield* api.download(file.file_path, maxMediaBytes)
          const data: Content = {
            _tag: "data",
            mediaType: media.mediaType,
            data: Buffer.from(bytes).toString("base64"),
            ...(media.name === undefined ? {} : { name: media.name })
          }
          return data
        }).pipe(
          Effect.catchAll((error) =>
            Effect.as(
              Effect.logWarning("media download failed", error.message),
              error._tag === "TelegramFileTooLarge" ? tooLarge : note("the download failed")
            )
          )
        )
      }

      const handleMessage = (message: Message, raw: unknown) =>
        Effect.gen(function*() {
          const chat = message.chat
          if (chat.type === "channel") return
          const isGroup = chat.type === "group" || chat.type === "supergroup"
          const threadId = message.is_topic_message === true ? message.message_thread_id : undefined
          const key = isolationKey(chat.id, threadId, name) as IsolationKey
          const target: ChatTarget = { chatId: chat.id, threadId }
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
            const context: CommandContext = { request, args: command.args, reply: (text) => say(target, text) }
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
          if (media !== undefined) contents.push(yield* fetchMedia(media))
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
            stream: streaming
          }
          yield* dispatch(request, raw, target)
        })

      const handleCallback = (query: CallbackQuery, raw: unknown) =>
        Effect.gen(function*() {
          yield* api.call("answerCallbackQuery", { callback_query_id: query.id }, Schema.Unknown).pipe(
            Effect.catchAll((error) => Effect.logWarning("answerCallbackQuery failed", error.message))
          )
          const message = query.message
          if (message === undefined || query.data === undefined || query.data.length === 0) return
          const threadId = message.is_topic_message === true ? message.message_thread_id : undefined
          const request: ChannelRequest = {
            channel: name,
            operation: "message.create",
            input: [userMessage(query.data)],
            session: { isolationKey: isolationKey(message.chat.id, threadId, name) as IsolationKey },
            identity: identityOf(message.chat.id, threadId, query.from),
            attributes: {
              chat_id: message.chat.id,
              callback_query_id: query.id,
              user_id: query.from.id,
              ...(threadId === undefined ? {} : { message_thread_id: threadId })
            },
            stream: streaming
          }
          yield* dispatch(request, raw, { chatId: message.chat.id, threadId })
        })

      const handleUpdate = (update: Update, raw: unknown): Effect.Effect<void> => {
        if (update.callback_query !== undefined) return handleCallback(update.callback_query, raw)
        const message = update.message ?? update.edited_message
        if (message !== undefined) return handleMessage(message, raw)
        return Effect.void
      }

      const chatKeyOf = (update: Update): string | undefined => {
        const message = update.message ?? update.edited_message ?? update.callback_query?.message
        if (message === undefined) return undefined
        const threadId = message.is_topic_message === true ? message.message_thread_id : undefined
        return isolationKey(message.chat.id, threadId, name)
      }

      // The last queued update of each chat; a new one waits for it, so a chat's updates run in arrival order
      // while chats run in parallel. An entry lives only while its chat has work.
      const tails = new Map<string, Deferred.Deferred<void>>()

      /** Accepts an update once (duplicates are dropped) and queues it behind its chat's earlier updates. */
      const accept = (update: Update, raw: unknown) =>
        Effect.gen(function*() {
          const fresh = yield* ctx.state.markSeen(seenNamespace, String(update.update_id))
          if (!fresh) {
            yield* Effect.logDebug("duplicate update dropped", update.update_id)
            return
          }
          // Interruptible explicitly: the HTTP handler calling this may be running uninterruptibly, and a forked
          // fiber inherits that, which would make shutdown (and stopping the typing and edit loops) hang.
          const work = annotate(handleUpdate(update, raw)).pipe(
            Effect.catchAllCause((cause) => Effect.logError("update handling failed", cause)),
            Effect.interruptible
          )
          const chatKey = chatKeyOf(update)
          if (chatKey === undefined) {
            yield* FiberSet.run(fibers, work)
            return
          }
          const previous = tails.get(chatKey)
          const done = yield* Deferred.make<void>()
          tails.set(chatKey, done)
          yield* FiberSet.run(
            fibers,
            (previous === undefined ? work : Effect.zipRight(Deferred.await(previous), work)).pipe(
              Effect.ensuring(Effect.suspend(() => {
                if (tails.get(chatKey) === done) tails.delete(chatKey)
                return Deferred.succeed(done, undefined)
              })),
              Effect.interruptible
            )
          )
        })

      // ---- webhook -------------------------------------------------------------------------------------------

      const expectedSecret = secret === undefined ? undefined : sha256(secret)
      const secretMatches = (header: string | undefined) =>
        expectedSecret !== undefined && header !== undefined &&
        Crypto.timingSafeEqual(sha256(header), expectedSecret)

      const webhook = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!secretMatches(input.request.headers["x-telegram-bot-api-secret-token"])) {
            return errorJson(401, "unauthorized", "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong")
          }
          const body = yield* Effect.either(readJson(input.request, ctx.settings))
          if (body._tag === "Left") {
            const problem = describeBodyError(body.left)
            return errorJson(problem.status, problem.type, problem.message)
          }
          const raw = body.right
          if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
            return errorJson(400, "invalid_update", "the request body must be a JSON object (a Telegram Update)")
          }
          const update = decodeUpdate(raw)
          if (update._tag === "Left") {
            return errorJson(400, "invalid_update", `the body is not a Telegram Update: ${update.left.message}`)
          }
          // Acknowledge at once: the turn runs in the background, in order with the chat's other updates.
          yield* accept(update.right, raw)
          return json({ ok: true })
        })
      )

      // ---- polling -------------------------------------------------------------------------------------------

      const poll = Effect.gen(function*() {
        const stored = yield* ctx.state.getCursor(cursorName)
        let offset = Option.match(stored, { onNone: () => undefined, onSome: (v) => Number(v) })
        const once = Effect.gen(function*() {
          const items = yield* api.call(
            "getUpdates",
            { ...(offset === undefined ? {} : { offset }), timeout: pollingTimeout, allowed_updates: allowedUpdates },
            Schema.Array(Schema.Unknown),
            { timeout: Duration.seconds(pollingTimeout + 15) }
          )
          for (const item of items) {
            const id = (item as { readonly update_id?: unknown } | null)?.update_id
            const update = decodeUpdate(item)
            if (update._tag === "Right") yield* accept(update.right, item)
            else yield* Effect.logWarning("malformed update skipped", update.left.message)
            if (typeof id === "number" && (offset === undefined || id + 1 > offset)) offset = id + 1
          }
          if (items.length > 0 && offset !== undefined) yield* ctx.state.setCursor(cursorName, String(offset))
        })
        const backoff = Schedule.intersect(
          pollingBackoff,
          Schedule.identity<BotApiError>().pipe(Schedule.addDelay((e) => BotApi.retryAfterMillis(e) ?? 0))
        )
        const loop = once.pipe(
          Effect.tapError((error) =>
            BotApi.isConflict(error) ? Effect.void : Effect.logWarning("getUpdates failed; backing off", error.message)
          ),
          Effect.retry({ schedule: backoff, while: (error) => !BotApi.isConflict(error) }),
          Effect.forever
        )
        return yield* loop
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(
            "another consumer is receiving this bot's updates (409 Conflict); this instance stays idle",
            error.message
          )
        ),
        annotate
      )

      // ---- startup -------------------------------------------------------------------------------------------

      // Missing configuration and answers like 401 (bad token) can never succeed: the host stops retrying those.
      const startupError = (message: string, retryable = false) =>
        new ChannelStartupError({ channel: name, message, retryable })

      const startup = Effect.gen(function*() {
        if (mode === "webhook") {
          if (options.webhookUrl === undefined) {
            return yield* startupError("webhook transport needs a webhook URL (TELEGRAM_WEBHOOK_URL)")
          }
          if (secret === undefined || !SECRET_PATTERN.test(secret)) {
            return yield* startupError(
              "webhook transport needs a secret token (TELEGRAM_SECRET_TOKEN): 1-256 characters of A-Z, a-z, 0-9, _ or -"
            )
          }
        }
        const me = yield* api.call("getMe", {}, User).pipe(
          Effect.mapError((error) =>
            startupError(`getMe failed (check TELEGRAM_BOT_TOKEN): ${error.message}`, BotApi.isRetryable(error))
          )
        )
        bot = { id: me.id, username: me.username ?? "" }
        if (options.registerCommands !== false) {
          yield* api.call(
            "setMyCommands",
            { commands: commands.map((c) => ({ command: c.name, description: c.description })) },
            Schema.Unknown
          ).pipe(Effect.catchAll((error) => Effect.logWarning("setMyCommands failed", error.message)))
        }
        if (mode === "webhook") {
          yield* BotApi.withRetry(
            api.call(
              "setWebhook",
              { url: options.webhookUrl, allowed_updates: allowedUpdates, secret_token: secret },
              Schema.Unknown
            )
          ).pipe(
            Effect.mapError((error) => startupError(`setWebhook failed: ${error.message}`, BotApi.isRetryable(error)))
          )
          if (options.deleteWebhookOnShutdown === true) {
            yield* Effect.addFinalizer(() =>
              api.call("deleteWebhook", {}, Schema.Unknown, { timeout: "5 seconds" }).pipe(
                Effect.catchAll((error) => Effect.logWarning("deleteWebhook failed", error.message))
              )
            )
          }
        } else {
          yield* api.call("deleteWebhook", { drop_pending_updates: false }, Schema.Unknown).pipe(
            Effect.catchAll((error) => Effect.logWarning("deleteWebhook failed", error.message))
          )
          yield* Effect.forkScoped(poll)
        }
        yield* Effect.logInfo(`telegram bot @${bot.username} ready (${mode})`)
      }).pipe(annotate)

      // ---- push ----------------------------------------------------------------------------------------------

      const push = (
        identity: ChannelIdentity,
        result: HostedRunResult,
        pushOptions: { readonly isEcho: boolean; readonly idempotencyKey: string }
      ): Effect.Effect<void, PushFailure> =>
        Effect.gen(function*() {
          if (!/^-?\d+$/.test(identity.nativeId) && !identity.nativeId.startsWith("@")) {
            return yield* Effect.fail<PushFailure>({
              _tag: "PushFailure",
              retryable: false,
              message: `"${identity.nativeId}" is not a Telegram chat id`
            })
          }
          const thread = identity.attributes?.message_thread_id
          const target: ChatTarget = {
            chatId: identity.nativeId,
            threadId: typeof thread === "number" ? thread : undefined,
            silent: pushOptions.isEcho
          }
          const progressKey = `${pushOptions.idempotencyKey}:${pushOptions.isEcho ? "echo" : "reply"}`
          const parts = replyParts(replyOf(result.response))
          const done = pushProgress.get(progressKey) ?? 0
          for (let i = done; i < parts.length; i++) {
            yield* sendPart(target, parts[i]!, false).pipe(Effect.mapError(toPushFailure))
            pushProgress.set(progressKey, i + 1)
          }
          pushProgress.delete(progressKey)
        }).pipe(
          Effect.tapError((failure) =>
            failure.retryable ?
              Effect.logInfo("push failed; will retry", failure.message) :
              Effect.logWarning("push rejected by Telegram; not retrying", failure.message)
          ),
          annotate
        )

      const routes: Array<Route> = mode === "webhook"
        ? [{ method: "POST", path: "/webhook", handler: webhook, body: "json" }]
        : []
      return {
        path: options.path ?? `/${name}`,
        routes,
        commands,
        startup,
        push: { push },
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: mode === "webhook" ? "Telegram webhook" : "Telegram long polling"
      }
    }))
}

/**
 * The channel as configured by the environment, or none when TELEGRAM_BOT_TOKEN is unset:
 * TELEGRAM_API_BASE, TELEGRAM_WEBHOOK_URL, TELEGRAM_SECRET_TOKEN, TELEGRAM_DELETE_WEBHOOK_ON_SHUTDOWN,
 * TELEGRAM_PARSE_MODE, TELEGRAM_STREAM.
 */
export const fromConfig: Effect.Effect<Option.Option<Channel>, ConfigError.ConfigError> = Effect.gen(function*() {
  const token = yield* Config.option(Config.redacted("TELEGRAM_BOT_TOKEN"))
  if (Option.isNone(token) || Redacted.value(token.value).trim().length === 0) return Option.none()
  const apiBase = yield* Config.string("TELEGRAM_API_BASE").pipe(Config.withDefault("https://api.telegram.org"))
  const webhookUrl = yield* Config.option(Config.string("TELEGRAM_WEBHOOK_URL"))
  const secretToken = yield* Config.option(Config.redacted("TELEGRAM_SECRET_TOKEN"))
  const deleteWebhookOnShutdown = yield* Config.boolean("TELEGRAM_DELETE_WEBHOOK_ON_SHUTDOWN").pipe(
    Config.withDefault(false)
  )
  const parseMode = yield* Config.option(Config.literal("MarkdownV2", "HTML", "Markdown")("TELEGRAM_PARSE_MODE"))
  const stream = yield* Config.boolean("TELEGRAM_STREAM").pipe(Config.withDefault(true))
  return Option.some(make({
    token: token.value,
    apiBase,
    deleteWebhookOnShutdown,
    stream,
    ...(Option.isSome(webhookUrl) && webhookUrl.value.length > 0 ? { webhookUrl: webhookUrl.value } : {}),
    ...(Option.isSome(secretToken) ? { secretToken: secretToken.value } : {}),
    ...(Option.isSome(parseMode) ? { parseMode: parseMode.value } : {})
  }))
})
