/**
 * At most `max` effects at once, the others waiting in arrival order: a FIFO semaphore of one permit per effect.
 *
 * Why not `Effect.makeSemaphore`: its release wakes every waiter while any permit is free (`free` only drops when
 * a woken fiber runs), so each release costs one wake-up per waiter and a thousand waiting Bot API calls cost a
 * million wake-ups (measured: ~6x the Effect steps per Telegram update). Here a release hands its permit to the
 * first waiter, or frees it when none waits.
 */
import { Effect } from "effect"

export interface Limiter {
  /** Runs `effect` once a permit is free (waiting for one is interruptible); the permit is returned however it ends. */
  readonly withPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

interface Waiter {
  readonly resume: (effect: Effect.Effect<void>) => void
  // waiting → granted (a release handed it the permit) or cancelled (interrupted while waiting).
  state: "waiting" | "granted" | "cancelled"
}

/** A limiter of `max` (at least 1) permits. */
export const make = (max: number): Effect.Effect<Limiter> =>
  Effect.sync(() => {
    const permits = Math.max(1, max)
    let active = 0
    // Cancelled waiters stay in the array until a release skips them: no search on interruption.
    const waiting: Array<Waiter> = []
    let head = 0

    const release = () => {
      while (head < waiting.length) {
        const waiter = waiting[head]!
        waiting[head++] = undefined as never
        if (head > 1024 && head * 2 > waiting.length) {
          waiting.splice(0, head)
          head = 0
        }
        if (waiter.state === "waiting") {
          waiter.state = "granted"
          waiter.resume(Effect.void)
          return
        }
      }
      active--
    }

    const acquire = Effect.suspend(() => {
      if (active < permits) {
        active++
        return Effect.void
      }
      return Effect.async<void>((resume) => {
        const waiter: Waiter = { resume, state: "waiting" }
        waiting.push(waiter)
        // Runs when the wait is interrupted. The permit may have been handed over after the interruption won the
        // race (the hand-over's resume is then ignored): pass it on, or it would be lost.
        return Effect.sync(() => {
          if (waiter.state === "granted") release()
          waiter.state = "cancelled"
        })
      })
    })

    const releaseEffect = Effect.sync(release)

    const withPermit = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(restore(acquire), Effect.ensuring(restore(effect), releaseEffect))
      )

    return { withPermit }
  })
