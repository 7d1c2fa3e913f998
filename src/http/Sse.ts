/**
 * Server-sent events: framing, a heartbeat for quiet streams, and a response whose body writes every chunk of
 * ready events at once.
 */
import { HttpServerResponse } from "@effect/platform"
import type { Duration } from "effect"
import { Chunk, Effect, Mailbox, Stream } from "effect"

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

// Frames a slow reader may leave unread before the stream stops pulling its source (backpressure).
const heartbeatBuffer = 1024

/**
 * `frames`, plus a `HEARTBEAT` comment whenever `interval` passed without a frame, so proxies keep a quiet
 * stream (a long turn, an idle page) open. The source runs in a fiber of its own feeding a bounded mailbox the
 * response reads; a ticker looks every `interval` whether anything was sent since its last look. Nothing is done
 * per frame but the mailbox hand-off (no timer to reset), and both fibers end with the stream, either way.
 */
export const withHeartbeat = <E>(
  frames: Stream.Stream<string, E>,
  interval: Duration.DurationInput
): Stream.Stream<string, E> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<string, E>({ capacity: heartbeatBuffer })
    let sent = false
    // Interruptible explicitly: a fork inherits its parent's flags, and both must stop with the stream.
    yield* Effect.forkScoped(Effect.interruptible(
      Stream.runForEachChunk(frames, (chunk) => {
        sent = true
        return mailbox.offerAll(chunk)
      }).pipe(Effect.exit, Effect.flatMap((exit) => mailbox.done(exit)))
    ))
    const beat = Effect.sync(() => {
      if (!sent) mailbox.unsafeOffer(HEARTBEAT)
      sent = false
    })
    yield* Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(interval), beat))))
    return Mailbox.toStream(mailbox)
  }))

export const sseHeaders = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
} as const

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
