/**
 * Answering a conversation through the connector: a turn's reply (whole, or streamed in Teams 1:1 chats), the
 * typing indicator while the agent works, and the short texts a conversation gets when a turn cannot run.
 */
import { Duration, Effect, Option, Schedule } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { LinkRequiredError, TurnError } from "../../domain/Errors.js"
import type { AgentResponse } from "../../domain/Message.js"
import { turnErrorText } from "../shared/ReplyText.js"
import * as Cards from "./Cards.js"
import type { Connector, ConnectorError } from "./Connector.js"
import { withRetry } from "./Connector.js"
import type { FeedbackStore } from "./Feedback.js"
import * as Streaming from "./Streaming.js"

/** Where a reply goes. */
export interface Target {
  readonly serviceUrl: string
  readonly conversationId: string
  /** The activity answered; replies thread under it. */
  readonly replyToId: string | undefined
  /** Teams (`msteams`): native feedback, streaming in 1:1 chats. */
  readonly teams: boolean
  readonly personal: boolean
}

export interface Options {
  readonly typingInterval: Duration.Duration
  /** How long a turn runs before the typing indicator is first sent (zero: at once). */
  readonly typingDelay: Duration.Duration
  readonly stream: boolean
  readonly feedback: boolean
  readonly streaming: Streaming.Options
  /** Where replies with feedback buttons are remembered, so their ratings find the response. */
  readonly feedbackStore?: FeedbackStore
}

export interface Replies {
  /** Sends activities in order, each retried when worth it; the ids the connector gave them. */
  readonly sendAll: (target: Target, activities: ReadonlyArray<Record<string, unknown>>) => Effect.Effect<
    ReadonlyArray<string | undefined>,
    ConnectorError
  >
  /** A reply's messages (`responseId`: the turn's, named by the feedback card). */
  readonly render: (response: AgentResponse, target: Target, responseId?: string) => Array<Record<string, unknown>>
  /** A short plain text; failures are logged. */
  readonly say: (target: Target, text: string) => Effect.Effect<void>
  /**
   * Runs the request as a turn and sends its reply; a turn refused for want of a linked account goes to
   * `signIn` when given (a sign-in card, kept out of group chats), else its text is said like any refusal.
   */
  readonly answer: (
    request: ChannelRequest,
    raw: unknown,
    target: Target,
    signIn?: (error: LinkRequiredError) => Effect.Effect<void>
  ) => Effect.Effect<void>
}

const logSendFailure = (error: ConnectorError) => Effect.logWarning("could not send to the conversation", error.message)

export const make = (connector: Connector, ctx: ChannelContext, options: Options): Replies => {
  const send = (target: Target, activity: Record<string, unknown>) =>
    connector.send(target.serviceUrl, target.conversationId, activity, target.replyToId)

  const sendAll = (target: Target, activities: ReadonlyArray<Record<string, unknown>>) =>
    Effect.forEach(activities, (activity) => withRetry(send(target, activity)))

  const render = (response: AgentResponse, target: Target, responseId?: string) =>
    Cards.messages(response, { teams: target.teams, feedback: options.feedback, responseId })

  const say = (target: Target, text: string) =>
    sendAll(target, [Cards.text(text)]).pipe(Effect.asVoid, Effect.catchAll(logSendFailure))

  // The reply's last message carries the feedback buttons: remember which response it is.
  const remember = (target: Target, responseId: string | undefined, activityIds: ReadonlyArray<string | undefined>) =>
    options.feedback && options.feedbackStore !== undefined && responseId !== undefined ?
      Effect.forEach(
        activityIds.length === 0 ? [undefined] : activityIds,
        (id) => options.feedbackStore!.replySent(target.conversationId, id, responseId),
        { discard: true }
      ) :
      Effect.void

  /** Sends a reply's messages and remembers the last one for its feedback. */
  const deliver = (
    target: Target,
    messages: ReadonlyArray<Record<string, unknown>>,
    responseId: string | undefined
  ) =>
    sendAll(target, messages).pipe(
      Effect.flatMap((ids) => remember(target, responseId, ids.slice(-1))),
      Effect.catchAll(logSendFailure)
    )

  type SignIn = ((error: LinkRequiredError) => Effect.Effect<void>) | undefined

  const replyError = (target: Target, error: TurnError, signIn?: SignIn) =>
    error._tag === "LinkRequiredError" && signIn !== undefined ?
      signIn(error) :
      Effect.zipRight(Effect.logInfo("turn refused or failed", error._tag), say(target, turnErrorText(error)))

  // The indicator is renewed while the agent works (clients show it a few seconds); a failed one is skipped. It
  // starts after `typingDelay`: a turn answered sooner sends its reply alone.
  const typingLoop = (target: Target) => {
    const loop = send(target, { type: "typing" }).pipe(
      Effect.catchAll((error) => Effect.logDebug("typing indicator failed", error.message)),
      Effect.repeat(Schedule.spaced(options.typingInterval)),
      Effect.zipRight(Effect.never)
    )
    return Duration.isZero(options.typingDelay) ? loop : Effect.delay(loop, options.typingDelay)
  }
  const withTyping = (target: Target) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.raceFirst(effect, typingLoop(target))

  const runOnce = (request: ChannelRequest, raw: unknown, target: Target, signIn: SignIn) => {
    const responseId = request.attributes?.responseId
    return ctx.run(request, raw).pipe(
      withTyping(target),
      Effect.matchEffect({
        onFailure: (error) => replyError(target, error, signIn),
        onSuccess: ({ originating }) =>
          Option.isNone(originating) ?
            Effect.void :
            deliver(target, render(originating.value.response, target, responseId), responseId)
      })
    )
  }

  const runStreaming = (request: ChannelRequest, raw: unknown, target: Target, signIn: SignIn) =>
    Effect.gen(function*() {
      const started = yield* Effect.either(ctx.runStream(request, raw))
      if (started._tag === "Left") return yield* replyError(target, started.left, signIn)
      const streamed = yield* Streaming.run(
        (activity) => send(target, activity),
        started.right,
        options.streaming
      )
      if (streamed._tag === "Failed") return yield* replyError(target, streamed.error, signIn)
      if (streamed._tag === "Nothing") return
      const responseId = request.attributes?.responseId
      const messages = render(streamed.response, target, responseId)
      if (streamed._tag === "Finalize") {
        const [first, ...rest] = messages
        const finished = yield* Effect.either(streamed.finish(first!))
        if (finished._tag === "Left") {
          yield* Effect.logInfo("ending the stream failed; sending the reply as a message", finished.left.message)
          return yield* deliver(target, messages, responseId)
        }
        // A one-message reply is the stream's own message: Teams rates it by the stream's id.
        if (rest.length === 0) {
          return yield* remember(target, responseId, [...new Set([streamed.streamId, finished.right])])
        }
        return yield* deliver(target, rest, responseId)
      }
      return yield* deliver(target, messages, responseId)
    })

  const answer = (request: ChannelRequest, raw: unknown, target: Target, signIn?: SignIn): Effect.Effect<void> =>
    options.stream && target.teams && target.personal ?
      runStreaming({ ...request, stream: true }, raw, target, signIn) :
      runOnce({ ...request, stream: false }, raw, target, signIn)

  return { sendAll, render, say, answer }
}
