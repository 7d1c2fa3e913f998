/**
 * Answering a conversation through the connector: a turn's reply (whole, or streamed in Teams 1:1 chats), the
 * typing indicator while the agent works, and the short texts a conversation gets when a turn cannot run.
 */
import type { Duration } from "effect"
import { Effect, Option, Schedule } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import type { AgentResponse } from "../../domain/Message.js"
import { turnErrorText } from "../shared/ReplyText.js"
import * as Cards from "./Cards.js"
import type { Connector, ConnectorError } from "./Connector.js"
import { withRetry } from "./Connector.js"
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
  readonly stream: boolean
  readonly feedback: boolean
  readonly streaming: Streaming.Options
}

export interface Replies {
  /** Sends activities in order, each retried when worth it. */
  readonly sendAll: (target: Target, activities: ReadonlyArray<Record<string, unknown>>) => Effect.Effect<
    void,
    ConnectorError
  >
  /** A reply's messages. */
  readonly render: (response: AgentResponse, target: Target) => Array<Record<string, unknown>>
  /** A short plain text; failures are logged. */
  readonly say: (target: Target, text: string) => Effect.Effect<void>
  /** Runs the request as a turn and sends its reply. */
  readonly answer: (request: ChannelRequest, raw: unknown, target: Target) => Effect.Effect<void>
}

const logSendFailure = (error: ConnectorError) => Effect.logWarning("could not send to the conversation", error.message)

export const make = (connector: Connector, ctx: ChannelContext, options: Options): Replies => {
  const send = (target: Target, activity: Record<string, unknown>) =>
    connector.send(target.serviceUrl, target.conversationId, activity, target.replyToId)

  const sendAll = (target: Target, activities: ReadonlyArray<Record<string, unknown>>) =>
    Effect.forEach(activities, (activity) => withRetry(send(target, activity)), { discard: true })

  const render = (response: AgentResponse, target: Target) =>
    Cards.messages(response, { teams: target.teams, feedback: options.feedback })

  const say = (target: Target, text: string) =>
    sendAll(target, [Cards.text(text)]).pipe(Effect.catchAll(logSendFailure))

  const replyError = (target: Target, error: TurnError) =>
    Effect.zipRight(Effect.logInfo("turn refused or failed", error._tag), say(target, turnErrorText(error)))

  // The indicator is renewed while the agent works (clients show it a few seconds); a failed one is skipped.
  const withTyping = (target: Target) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.raceFirst(
      effect,
      send(target, { type: "typing" }).pipe(
        Effect.catchAll((error) => Effect.logDebug("typing indicator failed", error.message)),
        Effect.repeat(Schedule.spaced(options.typingInterval)),
        Effect.zipRight(Effect.never)
      )
    )

  const runOnce = (request: ChannelRequest, raw: unknown, target: Target) =>
    ctx.run(request, raw).pipe(
      withTyping(target),
      Effect.matchEffect({
        onFailure: (error) => replyError(target, error),
        onSuccess: ({ originating }) =>
          Option.isNone(originating) ?
            Effect.void :
            sendAll(target, render(originating.value.response, target)).pipe(Effect.catchAll(logSendFailure))
      })
    )

  const runStreaming = (request: ChannelRequest, raw: unknown, target: Target) =>
    Effect.gen(function*() {
      const started = yield* Effect.either(ctx.runStream(request, raw))
      if (started._tag === "Left") return yield* replyError(target, started.left)
      const streamed = yield* Streaming.run(
        (activity) => send(target, activity),
        started.right,
        options.streaming
      )
      if (streamed._tag === "Failed") return yield* replyError(target, streamed.error)
      if (streamed._tag === "Nothing") return
      const messages = render(streamed.response, target)
      if (streamed._tag === "Finalize") {
        const [first, ...rest] = messages
        const finished = yield* Effect.either(streamed.finish(first!))
        if (finished._tag === "Left") {
          yield* Effect.logInfo("ending the stream failed; sending the reply as a message", finished.left.message)
          return yield* sendAll(target, messages).pipe(Effect.catchAll(logSendFailure))
        }
        return yield* sendAll(target, rest).pipe(Effect.catchAll(logSendFailure))
      }
      return yield* sendAll(target, messages).pipe(Effect.catchAll(logSendFailure))
    })

  const answer = (request: ChannelRequest, raw: unknown, target: Target): Effect.Effect<void> =>
    options.stream && target.teams && target.personal ?
      runStreaming({ ...request, stream: true }, raw, target) :
      runOnce({ ...request, stream: false }, raw, target)

  return { sendAll, render, say, answer }
}
