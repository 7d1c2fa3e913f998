/**
 * Server-sent events: framing, a heartbeat for quiet streams, and a response whose body writes every chunk of
 * ready events at once.
 */
import { HttpServerResponse } from "@effect/platform"
import type { Duration } from "effect"
import { Chunk, Effect, Fiber, Mailbox, Stream } from "effect"

const encoder = new TextEncoder()

/** One SSE frame. Multi-line data becomes several `data:` lines, as the format requires. */
export const frame = (data: string, event?: string, id?: string): string => {
  let out = ""
  if (id !== undefined) out += `id: ${id}\n`
  if (event !== undefined) out += `event: ${event}\n`
  const lines = data.split(/\r\n|\r|\n/)
  for (const line of lines) out += `data: ${line}\n`
  return out + "\n"
}

export const comment = (text: string): string => `: ${text}\n\n`

/** The comment `withHeartbeat` sends. */
export const HEARTBEAT = comment("keep-alive")

export const sseHeaders = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
} as const

// Frames a slow reader may leave unread before the producer waits for it (backpressure).
const bufferedFrames = 1024

/**
 * An SSE body written by `body` through `emit`, plus a `HEARTBEAT` comment whenever `interval` passed without a
 * frame, so proxies keep a quiet stream (a long turn, an idle page) open. `body` runs in a fiber of its own
 * feeding a bounded mailbox the response reads; a ticker looks every `interval` whether anything was emitted since
 * its last look. Nothing is done per frame but the mailbox hand-off (no timer to reset). When the reader stops
 * early (the caller went away), `body` is interrupted and the body and ticker fibers are both gone before the
 * stream ends; `body` failing fails the stream.
 */
export const produce = <E>(
  interval: Duration.DurationInput,
  body: (emit: (frames: string) => Effect.Effect<void>) => Effect.Effect<void, E>
): Stream.Stream<string, E> =>
  Stream.unwrap(Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<string, E>({ capacity: bufferedFrames })
    let sent = false
    const emit = (frames: string) => {
      sent = true
      return Effect.asVoid(mailbox.offer(frames))
    }
    const beat = Effect.sync(() => {
      if (!sent) mailbox.unsafeOffer(HEARTBEAT)
      sent = false
    })
    // Daemons interrupted by the stream's own finalizer: cheaper than a scope per stream. Interruptible
    // explicitly, as a fork inherits its parent's flags.
    const producer = yield* Effect.forkDaemon(
      Effect.interruptible(Effect.flatMap(Effect.exit(body(emit)), (exit) => mailbox.done(exit)))
    )
    const ticker = yield* Effect.forkDaemon(
      Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(interval), beat)))
    )
    return Stream.ensuring(
      Mailbox.toStream(mailbox),
      Effect.zipRight(Fiber.interrupt(producer), Fiber.interrupt(ticker))
    )
  }))

/** `frames` with heartbeats (see `produce`); the frames of one chunk are emitted together. */
export const withHeartbeat = <E>(
  frames: Stream.Stream<string, E>,
  interval: Duration.DurationInput
): Stream.Stream<string, E> =>
  produce(interval, (emit) =>
    Stream.runForEachChunk(frames, (chunk) => {
      let text = ""
      for (const frame of chunk) text += frame
      return emit(text)
    }))

/** A `text/event-stream` response from a stream of frames; frames ready together are written together. */
export const response = <E>(
  frames: Stream.Stream<string, E>,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    Stream.mapChunks(frames, (chunk) => {
      let text = ""
      for (const f of chunk) text += f
      return text.length === 0 ? Chunk.empty<Uint8Array>() : Chunk.of(encoder.encode(text))
    }),
    {
      contentType: "text/event-stream",
      headers: headers === undefined ? sseHeaders : { ...sseHeaders, ...headers }
    }
  )
