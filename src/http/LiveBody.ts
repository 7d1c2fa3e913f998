/**
 * A streamed response body the host's listener (`NodeHandler`) may write without running its `Stream`: a `run`
 * attached to the stream, which writes text straight to the connection in the request's fiber. The stream stays
 * the body for any other server (the platform's), so a response built here works everywhere; the host skips the
 * stream run, its mailbox and its per-chunk encoding.
 */
import type { Effect, Stream } from "effect"

/** The connection a live body writes to. */
export interface Sink {
  /** Writes `text`; completes at once unless the connection's buffer is full (then when it drained). */
  readonly write: (text: string) => Effect.Effect<void>
  /**
   * Writes `text` now, ignoring backpressure (a heartbeat comment, frames already in memory); nothing once the
   * response is over or its client gone.
   */
  readonly unsafeWrite: (text: string) => void
}

/** Writes a whole body to `sink`; the listener ends the response when it completes. */
export type Run = (sink: Sink) => Effect.Effect<void, unknown>

const RunId: unique symbol = Symbol.for("effect-agent-host/http/LiveBody/run")

/** `stream`, carrying `run` as the way to write it directly. */
export const attach = <A, E>(stream: Stream.Stream<A, E>, run: Run): Stream.Stream<A, E> =>
  Object.assign(stream, { [RunId]: run })

/** The `run` attached to `stream`, if any. */
export const runOf = (stream: Stream.Stream<unknown, unknown>): Run | undefined =>
  (stream as { readonly [RunId]?: Run })[RunId]
