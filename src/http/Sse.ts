/**
 * Server-sent events: framing, a heartbeat for quiet streams, and a response whose body writes every chunk of
 * ready events at once.
 *
 * Every stream built here carries a live run (see `LiveBody`): the host's listener writes its frames straight to
 * the connection in the request's fiber, and a heartbeat writes its comment there too, so a response costs no
 * mailbox, no forked producer and no stream run of its own. Other servers read the same responses as streams.
 */
import { HttpServerResponse } from "@effect/platform"
import type { Duration, Scope } from "effect"
import { Chunk, Effect, Fiber, Mailbox, Stream } from "effect"
import * as LiveBody from "./LiveBody.js"

const encoder = new TextEncoder()

const lineBreak = /[\r\n]/

/** One SSE frame. Multi-line data becomes several `data:` lines, as the format requires. */
export const frame = (data: string, event?: string, id?: string): string => {
  // The common frame (one line of data, no id or event name) without the split.
  if (id === undefined && event === undefined && !lineBreak.test(data)) return `data: ${data}\n\n`
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

/** An open stream, as the ticker sees it. */
interface Open {
  /** Sends a heartbeat comment. */
  readonly beat: () => void
  /** Something was emitted since the ticker's last look. */
  sent: boolean
}

/**
 * Heartbeats for the SSE streams of one owner (a channel): a `HEARTBEAT` comment on every stream that stayed
 * silent for a whole `interval`, so proxies keep a quiet stream (a long turn, an idle page) open. One ticker for
 * all of them, living in the scope: every `interval` it looks whether each stream emitted since its last look.
 * A stream costs a set entry, and nothing per frame (no timer to reset).
 */
export interface Heartbeat {
  /**
   * A body written by `body` through `emit`. Written by the host's listener, `body` runs in the request's fiber
   * and `emit` writes to the connection (waiting only while its buffer is full); read as a stream, `body` runs in
   * a fiber of its own feeding a bounded mailbox the reader takes from. When the reader stops early (the caller
   * went away), `body` is interrupted, and is over before the stream ends; `body` failing fails the stream.
   */
  readonly produce: <E>(body: Body<E>) => Stream.Stream<string, E>
  /** `frames` with heartbeats; the frames of one chunk are emitted together. */
  readonly withHeartbeat: <E>(frames: Stream.Stream<string, E>) => Stream.Stream<string, E>
}

/**
 * What writes a produced body: `emit` writes frames, waiting while the connection's buffer is full; `emitNow`
 * writes frames at once, never waiting (for frames whose content is in memory already: waiting would only move
 * them from one buffer to another, and the caller may be a turn that must not wait on its client).
 */
export type Body<E> = (
  emit: (frames: string) => Effect.Effect<void>,
  emitNow: (frames: string) => void
) => Effect.Effect<void, E>

/**
 * A body written by `body` through `emit` (see `Heartbeat.produce`), with heartbeats on the streams of `open`
 * (none when undefined).
 */
const produceIn = <E>(open: Set<Open> | undefined, body: Body<E>): Stream.Stream<string, E> => {
  // Built when read as a stream (not by the host's listener, which writes the live body).
  const stream = Stream.suspend(() =>
    Stream.unwrap(Effect.gen(function*() {
      const mailbox = yield* Mailbox.make<string, E>({ capacity: bufferedFrames })
      // Starts as sent: the first comment follows at least a whole interval of silence.
      const entry: Open = { beat: () => mailbox.unsafeOffer(HEARTBEAT), sent: true }
      const emit = (frames: string) => {
        entry.sent = true
        return Effect.asVoid(mailbox.offer(frames))
      }
      const emitNow = (frames: string) => {
        entry.sent = true
        mailbox.unsafeOffer(frames)
      }
      open?.add(entry)
      // A daemon the stream's own finalizer interrupts: cheaper than a scope per stream. Interruptible
      // explicitly, as a fork inherits its parent's flags.
      const producer = yield* Effect.forkDaemon(
        Effect.interruptible(Effect.flatMap(Effect.exit(body(emit, emitNow)), (exit) => mailbox.done(exit)))
      )
      return Stream.ensuring(
        Mailbox.toStream(mailbox),
        Effect.suspend(() => {
          open?.delete(entry)
          return Fiber.interrupt(producer)
        })
      )
    }))
  )
  // Written live: `body` writes to the connection itself, in the writer's fiber.
  return LiveBody.attach(stream, (sink) => {
    if (open === undefined) return body(sink.write, sink.unsafeWrite)
    return Effect.suspend(() => {
      const entry: Open = { beat: () => sink.unsafeWrite(HEARTBEAT), sent: true }
      open.add(entry)
      return Effect.ensuring(
        body(
          (frames) => {
            entry.sent = true
            return sink.write(frames)
          },
          (frames) => {
            entry.sent = true
            sink.unsafeWrite(frames)
          }
        ),
        Effect.sync(() => open.delete(entry))
      )
    })
  })
}

/**
 * A body written by `body` through `emit`, without heartbeats (a stream that is never quiet for long): written by
 * the host's listener, `body` runs in the request's fiber and `emit` writes to the connection (see
 * `Heartbeat.produce`).
 */
export const produce = <E>(body: Body<E>): Stream.Stream<string, E> => produceIn(undefined, body)

export const heartbeat = (interval: Duration.DurationInput): Effect.Effect<Heartbeat, never, Scope.Scope> =>
  Effect.gen(function*() {
    const open = new Set<Open>()
    const beat = Effect.sync(() => {
      for (const stream of open) {
        if (!stream.sent) stream.beat()
        stream.sent = false
      }
    })
    yield* Effect.forkScoped(Effect.interruptible(Effect.forever(Effect.zipRight(Effect.sleep(interval), beat))))

    const produce = <E>(body: Body<E>): Stream.Stream<string, E> => produceIn(open, body)

    const withHeartbeat = <E>(frames: Stream.Stream<string, E>): Stream.Stream<string, E> =>
      produce((emit) =>
        Stream.runForEachChunk(frames, (chunk) => {
          let text = ""
          for (const frame of chunk) text += frame
          return emit(text)
        })
      )

    return { produce, withHeartbeat }
  })

/** `frames` with heartbeats of their own (see `Heartbeat`); a channel shares one `heartbeat` between its streams. */
export const withHeartbeat = <E>(
  frames: Stream.Stream<string, E>,
  interval: Duration.DurationInput
): Stream.Stream<string, E> =>
  Stream.unwrapScoped(Effect.map(heartbeat(interval), (beats) => beats.withHeartbeat(frames)))

/** Writes every chunk of `frames` to `sink` in one write. */
const writeFrames = <E>(frames: Stream.Stream<string, E>): LiveBody.Run => (sink) =>
  Stream.runForEachChunk(frames, (chunk) => {
    let text = ""
    for (const f of chunk) text += f
    return text.length === 0 ? Effect.void : sink.write(text)
  })

/** A `text/event-stream` response from a stream of frames; frames ready together are written together. */
export const response = <E>(
  frames: Stream.Stream<string, E>,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    LiveBody.attach(
      // Built when read as a stream (not by the host's listener, which writes the live body).
      Stream.suspend(() =>
        Stream.mapChunks(frames, (chunk) => {
          let text = ""
          for (const f of chunk) text += f
          return text.length === 0 ? Chunk.empty<Uint8Array>() : Chunk.of(encoder.encode(text))
        })
      ),
      LiveBody.runOf(frames) ?? writeFrames(frames)
    ),
    {
      contentType: "text/event-stream",
      headers: headers === undefined ? sseHeaders : { ...sseHeaders, ...headers }
    }
  )
