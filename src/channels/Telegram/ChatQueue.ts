/**
 * Per-chat order: work for one chat runs in arrival order, chats run in parallel.
 */
import type { Scope } from "effect"
import { Deferred, Effect, FiberSet } from "effect"

export interface ChatQueue {
  /** Runs `work` in the background after the chat's earlier work; without a key, at once. */
  readonly run: (key: string | undefined, work: Effect.Effect<void>) => Effect.Effect<void>
}

export const make: Effect.Effect<ChatQueue, never, Scope.Scope> = Effect.gen(function*() {
  const fibers = yield* FiberSet.make()
  // The last queued work of each chat; new work waits for it. An entry lives only while its chat has work.
  const tails = new Map<string, Deferred.Deferred<void>>()

  const run = (key: string | undefined, work: Effect.Effect<void>) =>
    Effect.gen(function*() {
      if (key === undefined) {
        yield* FiberSet.run(fibers, work)
        return
      }
      const previous = tails.get(key)
      const done = yield* Deferred.make<void>()
      tails.set(key, done)
      yield* FiberSet.run(
        fibers,
        (previous === undefined ? work : Effect.zipRight(Deferred.await(previous), work)).pipe(
          Effect.ensuring(Effect.suspend(() => {
            if (tails.get(key) === done) tails.delete(key)
            return Deferred.succeed(done, undefined)
          })),
          Effect.interruptible
        )
      )
    })

  return { run }
})
