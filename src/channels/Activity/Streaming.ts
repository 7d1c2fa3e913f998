/**
 * Teams streaming (1:1 chats): the reply grows in place while the agent writes it. An informative `typing`
 * activity opens the stream (its id, from the connector's 201, is the `streamId` of everything after), then
 * `typing` activities carry the full text so far with `streamSequence` counting up from there, at most one
 * request in flight and one per `interval`; the reply ends with a `message` whose stream info says `final`
 * (sent by the caller through `finish`). Teams refuses streams it does not allow (403 `ContentStreamNotAllowed`)
 * and ends any after two minutes: then the chunks stop and the reply goes out as a plain message.
 */
import type { Duration } from "effect"
import { Clock, Duration as DurationModule, Effect, Fiber, Queue, Stream } from "effect"
import type { TurnStream } from "../../core/Channel.js"
import type { TurnError } from "../../domain/Errors.js"
import type { AgentResponse } from "../../domain/Message.js"
import { MAX_TEXT_LENGTH } from "./Cards.js"
import type { ConnectorError } from "./Connector.js"

export interface Options {
  /** Least time between two chunks (Teams asks for 1-2 s). */
  readonly interval: Duration.Duration
  /** How long a stream may last; Teams' limit is two minutes (a margin stays for the final message). */
  readonly maxDuration: Duration.Duration
  /** The informative text that opens the stream (empty: no informative update). */
  readonly informative: string
}

export type Result =
  | { readonly _tag: "Failed"; readonly error: TurnError }
  | { readonly _tag: "Nothing" }
  /** No stream is open (refused, expired, or nothing streamed): send the reply as messages. */
  | { readonly _tag: "Messages"; readonly response: AgentResponse }
  /** A stream is open: `finish` sends the first message as its final activity (the id the connector gave it). */
  | {
    readonly _tag: "Finalize"
    readonly response: AgentResponse
    readonly streamId: string
    readonly finish: (message: Record<string, unknown>) => Effect.Effect<string | undefined, ConnectorError>
  }

/** The stream info entity of a chunk (the final one has no sequence, as the Teams docs show it). */
export const streamInfo = (
  streamType: "informative" | "streaming" | "final",
  streamId: string | undefined,
  sequence: number | undefined
) => ({
  type: "streaminfo",
  streamType,
  ...(streamId === undefined ? {} : { streamId }),
  ...(sequence === undefined ? {} : { streamSequence: sequence })
})

const notAllowed = (error: ConnectorError) =>
  error.status === 403 || error.code === "ContentStreamNotAllowed" || error.code === "ContentStreamHasExpired"

export const run = (
  send: (activity: Record<string, unknown>) => Effect.Effect<string | undefined, ConnectorError>,
  turn: TurnStream,
  options: Options
): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const state = {
      text: "",
      shown: "",
      streamId: undefined as string | undefined,
      sequence: 0,
      closed: false
    }
    const expired = Effect.map(
      Clock.currentTimeMillis,
      (now) => now - startedAt >= DurationModule.toMillis(options.maxDuration)
    )

    /** One chunk: the stream's first activity names its id; a refusal closes the stream for good. */
    const sendChunk = (streamType: "informative" | "streaming", text: string) =>
      Effect.gen(function*() {
        state.sequence += 1
        const id = yield* send({
          type: "typing",
          text,
          entities: [streamInfo(streamType, state.streamId, state.sequence)]
        })
        if (state.streamId === undefined) state.streamId = id
        if (streamType === "streaming") state.shown = text
      }).pipe(
        Effect.catchAll((error) => {
          if (notAllowed(error)) {
            state.closed = true
            return Effect.logInfo("the conversation does not allow streaming; sending whole messages", error.message)
          }
          // A lost chunk is superseded by the next one, which carries the whole text again.
          return Effect.logDebug("streaming chunk failed", error.message)
        })
      )

    const showInterim = Effect.suspend(() =>
      Effect.flatMap(expired, (isExpired) => {
        if (isExpired) state.closed = true
        const text = state.text.slice(0, MAX_TEXT_LENGTH)
        if (state.closed || text.trim().length === 0 || text === state.shown) return Effect.void
        return sendChunk("streaming", text)
      })
    ).pipe(Effect.uninterruptible)

    if (options.informative.length > 0) yield* Effect.uninterruptible(sendChunk("informative", options.informative))

    const changed = yield* Queue.sliding<void>(1)
    const streamer = yield* Effect.fork(
      Effect.forever(Effect.zipRight(Effect.zipRight(changed.take, showInterim), Effect.sleep(options.interval)))
    )
    const streamed = yield* Stream.runForEach(turn.updates, (update) => {
      if (update.role !== undefined && update.role !== "assistant") return Effect.void
      let delta = ""
      for (const part of update.contents) if (part._tag === "text") delta += part.text
      if (delta.length === 0) return Effect.void
      state.text += delta
      return changed.offer(undefined)
    }).pipe(Effect.either)
    yield* Fiber.interrupt(streamer)
    const outcome = streamed._tag === "Left" ? streamed : yield* Effect.either(turn.result)
    if (outcome._tag === "Left") return { _tag: "Failed", error: outcome.left } as const
    const shaped = outcome.right.originating
    if (shaped._tag === "None") return { _tag: "Nothing" } as const
    const response = shaped.value.response
    if (state.closed || state.streamId === undefined || (yield* expired)) {
      return { _tag: "Messages", response } as const
    }
    const streamId = state.streamId
    const finish = (message: Record<string, unknown>) => {
      const entities = Array.isArray(message.entities) ? message.entities : []
      return send({ ...message, entities: [...entities, streamInfo("final", streamId, undefined)] })
    }
    return { _tag: "Finalize", response, streamId, finish } as const
  })
