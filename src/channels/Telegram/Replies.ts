/**
 * Answering a chat: text (split under Telegram's limit, sent again as plain text when Telegram refuses the
 * formatting), images, the typing indicator, and a turn's reply, streamed by editing one message or sent whole.
 */
import { Duration, Effect, Fiber, Option, Queue, Schedule, Schema, Stream } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { DataContent, UriContent } from "../../domain/Content.js"
import type { LinkRequiredError, TurnError } from "../../domain/Errors.js"
import type { Reply } from "../shared/ReplyText.js"
import { isBlank, replyOf, splitText, turnErrorText } from "../shared/ReplyText.js"
import type { BotApiError } from "./BotApi.js"
import * as BotApi from "./BotApi.js"
import type { SentMessage } from "./Updates.js"
import { SentMessage as SentMessageSchema } from "./Updates.js"

export type ParseMode = "MarkdownV2" | "HTML" | "Markdown"

/** Where a message goes: a chat, or a forum topic in it. */
export interface ChatTarget {
  readonly chatId: number | string
  readonly threadId: number | undefined
  readonly silent?: boolean
}

/** One part of a reply: an image, or a chunk of text under the limit. */
export type ReplyPart = DataContent | UriContent | string

export interface Options {
  /** parse_mode of final replies; streaming edits are always plain text. */
  readonly parseMode: ParseMode | undefined
  /** Least time between two streaming edits. */
  readonly editInterval: Duration.Duration
  /** How often the typing indicator is renewed while the agent works. */
  readonly typingInterval: Duration.Duration
  /** How long a turn runs before the typing indicator is first sent (zero: at once). */
  readonly typingDelay: Duration.Duration
  readonly sendTypingAction: boolean
  /** Shows a sign-in challenge (by private message in groups); default: the error text in the chat. */
  readonly linkChallenge?: (
    request: ChannelRequest,
    target: ChatTarget,
    error: LinkRequiredError
  ) => Effect.Effect<void>
}

export interface Replies {
  /** sendMessage; when Telegram cannot parse the formatting, the same text again as plain text. */
  readonly sendText: (
    target: ChatTarget,
    text: string,
    mode: ParseMode | undefined,
    retry: boolean
  ) => Effect.Effect<SentMessage, BotApiError>
  /** The parts of a reply, in order: images, then the text in chunks (or a placeholder when empty). */
  readonly replyParts: (reply: Reply) => ReadonlyArray<ReplyPart>
  /** Sends one part (final formatting for text); `retry` retries what is worth retrying. */
  readonly sendPart: (target: ChatTarget, part: ReplyPart, retry: boolean) => Effect.Effect<unknown, BotApiError>
  /** A short plain text (command answers, refusals); failures are logged. */
  readonly say: (target: ChatTarget, text: string) => Effect.Effect<void>
  /** The chat's text for a turn that could not run. */
  readonly replyError: (target: ChatTarget, error: TurnError) => Effect.Effect<void>
  /** Runs the request as a turn (streamed when `request.stream`) and renders its reply in the chat. */
  readonly answer: (request: ChannelRequest, raw: unknown, target: ChatTarget) => Effect.Effect<void>
}

export const make = (api: BotApi.BotApi, ctx: ChannelContext, options: Options): Replies => {
  const parseMode = options.parseMode

  const baseParams = (target: ChatTarget) => ({
    chat_id: target.chatId,
    ...(target.threadId === undefined ? {} : { message_thread_id: target.threadId }),
    ...(target.silent === true ? { disable_notification: true } : {})
  })

  const retrying = <A>(effect: Effect.Effect<A, BotApiError>, retry: boolean) =>
    retry ? BotApi.withRetry(effect) : effect

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
        SentMessageSchema
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

  const replyParts = (reply: Reply): ReadonlyArray<ReplyPart> => {
    const chunks = splitText(reply.text).filter((chunk) => !isBlank(chunk))
    if (chunks.length === 0 && reply.images.length === 0) return ["(no response)"]
    return [...reply.images, ...chunks]
  }

  const sendPart = (target: ChatTarget, part: ReplyPart, retry: boolean) =>
    typeof part === "string" ? sendText(target, part, parseMode, retry) : sendImage(target, part, retry)

  const sendReply = (target: ChatTarget, reply: Reply) =>
    Effect.forEach(replyParts(reply), (part) => sendPart(target, part, true), { discard: true })

  const logSendFailure = (error: BotApiError) => Effect.logWarning("could not send to the chat", error.message)

  const say = (target: ChatTarget, text: string) =>
    Effect.forEach(splitText(text), (chunk) => sendText(target, chunk, undefined, true), { discard: true }).pipe(
      Effect.catchAll(logSendFailure)
    )

  const typingLoop = (target: ChatTarget) => {
    const loop = api.call(
      "sendChatAction",
      {
        chat_id: target.chatId,
        action: "typing",
        ...(target.threadId === undefined ? {} : { message_thread_id: target.threadId })
      },
      Schema.Unknown,
      { timeout: "10 seconds" }
    ).pipe(Effect.ignore, Effect.repeat(Schedule.spaced(options.typingInterval)))
    // A turn answered within the delay sends no indicator: one Bot API request per quick turn saved (Telegram asks
    // for it only "when a response from the bot will take a noticeable amount of time to arrive").
    return Duration.isZero(options.typingDelay) ? loop : Effect.delay(loop, options.typingDelay)
  }

  const withTyping = (target: ChatTarget) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    !options.sendTypingAction ?
      effect :
      // Forked interruptible: a fiber forked in `acquire` would inherit its uninterruptibility.
      Effect.acquireUseRelease(Effect.fork(Effect.interruptible(typingLoop(target))), () => effect, Fiber.interrupt)

  const replyError = (target: ChatTarget, error: TurnError) =>
    Effect.zipRight(
      Effect.logInfo("turn refused or failed", error._tag),
      say(target, turnErrorText(error))
    )

  // A sign-in challenge must not land in a group: the channel's linking shows it to the sender alone.
  const refuse = (request: ChannelRequest, target: ChatTarget, error: TurnError) =>
    error._tag === "LinkRequiredError" && options.linkChallenge !== undefined ?
      Effect.zipRight(Effect.logInfo("turn needs sign-in"), options.linkChallenge(request, target, error)) :
      replyError(target, error)

  const runOnce = (request: ChannelRequest, raw: unknown, target: ChatTarget) =>
    ctx.run(request, raw).pipe(
      withTyping(target),
      Effect.matchEffect({
        onFailure: (error) => refuse(request, target, error),
        onSuccess: ({ originating }) =>
          Option.isNone(originating) ?
            Effect.void :
            sendReply(target, replyOf(originating.value.response)).pipe(Effect.catchAll(logSendFailure))
      })
    )

  const runStreaming = (request: ChannelRequest, raw: unknown, target: ChatTarget) =>
    Effect.gen(function*() {
      const started = yield* Effect.either(ctx.runStream(request, raw))
      if (started._tag === "Left") return yield* refuse(request, target, started.left)
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
        Effect.forever(Effect.zipRight(Effect.zipRight(changed.take, showInterim), Effect.sleep(options.editInterval)))
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
      if (outcome._tag === "Left") return yield* refuse(request, target, outcome.left)
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

  const answer = (request: ChannelRequest, raw: unknown, target: ChatTarget): Effect.Effect<void> =>
    request.stream ? runStreaming(request, raw, target) : runOnce(request, raw, target)

  return { sendText, replyParts, sendPart, say, replyError, answer }
}
