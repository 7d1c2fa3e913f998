/**
 * A background response being rendered, for whoever follows it (the creating request with `stream: true`,
 * `GET /responses/{id}?stream=true`): the events rendered so far, and a `SubscriptionRef` announcing how many
 * there are and whether the run has ended. A follower replays from any sequence number, then follows live
 * until the run ends; a chunk of announcements becomes one write of every event they cover.
 */
import { Chunk, Effect, Stream, SubscriptionRef } from "effect"
import type { RenderedEvent } from "./Render.js"
import { eventFrame } from "./Render.js"

export interface Progress {
  /** Events rendered so far. */
  readonly count: number
  /** The run ended: no event follows. */
  readonly done: boolean
}

export interface LiveRun {
  /** Rendered events in sequence order (sequences start at 1 and are contiguous: event n sits at n - 1). */
  readonly events: Array<RenderedEvent>
  readonly progress: SubscriptionRef.SubscriptionRef<Progress>
}

export const make = (initial: ReadonlyArray<RenderedEvent>): Effect.Effect<LiveRun> =>
  Effect.map(
    SubscriptionRef.make<Progress>({ count: initial.length, done: false }),
    (progress) => ({ events: [...initial], progress })
  )

/** Adds events and tells the followers. */
export const append = (run: LiveRun, events: ReadonlyArray<RenderedEvent>): Effect.Effect<void> =>
  events.length === 0 ? Effect.void : Effect.suspend(() => {
    for (const event of events) run.events.push(event)
    return SubscriptionRef.set(run.progress, { count: run.events.length, done: false })
  })

/** Ends the run: followers write what they have not yet written, then end. */
export const finish = (run: LiveRun): Effect.Effect<void> =>
  Effect.suspend(() => SubscriptionRef.set(run.progress, { count: run.events.length, done: true }))

/** SSE frames of the events after sequence `after`, then of every new one, until the run ends. */
export const follow = (run: LiveRun, after: number): Stream.Stream<string> =>
  Stream.suspend(() => {
    let cursor = Math.max(0, after)
    return run.progress.changes.pipe(
      Stream.takeUntil((progress) => progress.done),
      Stream.mapChunks((announced) => {
        const count = Chunk.unsafeLast(announced).count
        if (count <= cursor) return Chunk.empty<string>()
        let text = ""
        for (let i = cursor; i < count; i++) {
          const event = run.events[i]!
          text += eventFrame(event.type, event.json)
        }
        cursor = count
        return Chunk.of(text)
      })
    )
  })
