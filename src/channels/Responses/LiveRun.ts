/**
 * A rendering run others can follow: the events rendered so far, whether the run ended, and a wake-up signal.
 * Followers read from the shared event list (a chunk per wake-up, so ready events are written together) and
 * get an SSE comment when the run has been silent for a heartbeat interval.
 */
import { Chunk, Deferred, Duration, Effect, Exit, Fiber, FiberId, Option, Schedule, Stream } from "effect"
import * as Sse from "../../http/Sse.js"
import type { RenderedEvent } from "./Render.js"
import { eventFrame } from "./Render.js"

export const HEARTBEAT = Sse.comment("keep-alive")

export class LiveRun {
  readonly events: Array<RenderedEvent> = []
  done = false
  deleted = false
  /** The fiber consuming the turn; interrupting it cancels the run. */
  consuming: Fiber.RuntimeFiber<unknown> | undefined = undefined
  /** The caller went away and asked for its turn to be cancelled then (`on_disconnect: cancel`). */
  abandoned = false
  private signal = Deferred.unsafeMake<void>(FiberId.none)

  append(events: ReadonlyArray<RenderedEvent>): void {
    if (events.length === 0) return
    for (const event of events) this.events.push(event)
    this.wake()
  }

  /** Cancels an unfinished run whose caller went away; nothing once the run is done. */
  abandon(): Effect.Effect<void> {
    if (this.done) return Effect.void
    this.abandoned = true
    return this.consuming === undefined ? Effect.void : Fiber.interruptFork(this.consuming)
  }

  finish(): void {
    this.done = true
    this.wake()
  }

  private wake(): void {
    const old = this.signal
    this.signal = Deferred.unsafeMake<void>(FiberId.none)
    Deferred.unsafeDone(old, Exit.void)
  }

  /**
   * Frames after sequence `after` until the run ends. A per-follower ticker checks every `heartbeat`
   * whether anything arrived since its last look; if not, the follower emits a comment. The ticker does
   * nothing per event, so busy streams pay nothing for it.
   */
  follow(after: number, heartbeat: Duration.DurationInput): Stream.Stream<string> {
    const state = { beat: false, seen: -1 }
    const pull = (cursor: number): Effect.Effect<Option.Option<readonly [Chunk.Chunk<string>, number]>> =>
      Effect.suspend(() => {
        const signal = this.signal
        // Sequences start at 1 and are contiguous, so event n sits at index n - 1.
        const length = this.events.length
        if (length > cursor) {
          let text = ""
          for (let i = cursor; i < length; i++) {
            const event = this.events[i]!
            text += eventFrame(event.type, event.json)
          }
          return Effect.succeed(Option.some([Chunk.of(text), length] as const))
        }
        if (this.done) return Effect.succeed(Option.none())
        if (state.beat) {
          state.beat = false
          return Effect.succeed(Option.some([Chunk.of(HEARTBEAT), cursor] as const))
        }
        return Effect.zipRight(Deferred.await(signal), pull(cursor))
      })
    const tick = Effect.sync(() => {
      if (this.done) return
      if (this.events.length === state.seen) {
        state.beat = true
        this.wake()
      }
      state.seen = this.events.length
    })
    return Stream.unwrapScoped(
      Effect.as(
        // Interruptible explicitly: a fork inherits its parent's flags, and the ticker must stop with the stream.
        Effect.forkScoped(Effect.interruptible(Effect.repeat(tick, Schedule.spaced(Duration.decode(heartbeat))))),
        Stream.unfoldChunkEffect(Math.max(0, after), pull)
      )
    )
  }
}
