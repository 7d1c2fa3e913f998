/**
 * Per-chat order for the chat channels (Telegram, Activity/Teams): a chat's updates are handled one after
 * another, in arrival order, chats in parallel; at most `maxWaiting` updates wait behind the one being handled.
 *
 * Why the channel orders updates although the session actor runs a key's turns in arrival order: the actor
 * orders only what happens between a turn's submission and its end. An update's handling starts before that
 * (media download, answering a callback query, and inside `ctx.run` the run hook and authorization, all
 * asynchronous, so a later text message would be submitted before an earlier photo) and ends after it (the
 * reply is rendered by the channel, in several messages or streamed edits, which must not interleave with the
 * next reply). Commands are not turns at all: `/new` resets the session at once, so without this order it would
 * overtake a message still waiting in the actor, which would then run in the new session. `ctx.run` offers no
 * "submitted" point to release the next update at, so the order is kept here, around the whole update, and the
 * actor sees at most one turn per chat from this channel. Its bound (16 waiting, `MailboxFull`) is mirrored
 * here so a flooding chat holds no more than that and is told to try again.
 */
import type { Scope } from "effect"
import { Duration, Effect, Fiber, FiberSet } from "effect"
import { wallClockSleep } from "../../domain/Time.js"

/** Like the session mailbox's default bound (`AGENT_HOST_SESSION_QUEUE`). */
export const defaultMaxWaiting = 16

export interface ChatQueue {
  /**
   * Queues `work` behind the chat's earlier work and runs it in the background; without a key, at once. When
   * `maxWaiting` updates already wait, `work` is dropped and `onFull` runs in the background instead.
   */
  readonly run: (
    key: string | undefined,
    work: Effect.Effect<void>,
    onFull: Effect.Effect<void>
  ) => Effect.Effect<void>
}

// How long shutdown waits for replies still being sent (the turns already had the host's grace).
const replyGrace = Duration.seconds(3)

interface Lane {
  readonly waiting: Array<Effect.Effect<void>>
}

export const make = (options: { readonly maxWaiting?: number } = {}): Effect.Effect<ChatQueue, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxWaiting = Math.max(0, options.maxWaiting ?? defaultMaxWaiting)
    const fibers = yield* FiberSet.make()
    // Registered after the set, so it runs first at shutdown: by then the host has given turns their grace, and
    // what is left is mostly sending their replies; wait for that (bounded) before the set interrupts the rest.
    // In a fiber of its own: shutdown runs in finalizers of an interrupted fiber, where a wait would end at once.
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(
        Effect.forkDaemon(
          Effect.interruptible(Effect.raceFirst(FiberSet.awaitEmpty(fibers), wallClockSleep(replyGrace)))
        ),
        Fiber.join
      )
    )
    // A lane exists only while its chat has work: one fiber runs it, taking the next item when one ends. Taking
    // the next item (or removing the empty lane) and queueing one happen in synchronous steps, so no item is
    // queued on a lane that has just ended.
    const lanes = new Map<string, Lane>()

    const drain = (key: string, lane: Lane, work: Effect.Effect<void>): Effect.Effect<void> =>
      Effect.zipRight(
        work,
        Effect.suspend(() => {
          const next = lane.waiting.shift()
          if (next !== undefined) return drain(key, lane, next)
          lanes.delete(key)
          return Effect.void
        })
      )

    // Interruptible explicitly: the caller may be an HTTP handler running uninterruptibly, and a forked fiber
    // inherits that, which would make shutdown (and stopping the typing and edit loops) hang.
    const fork = (effect: Effect.Effect<void>) => FiberSet.run(fibers, Effect.interruptible(effect))

    const run = (key: string | undefined, work: Effect.Effect<void>, onFull: Effect.Effect<void>) =>
      Effect.suspend(() => {
        if (key === undefined) return Effect.asVoid(fork(work))
        const lane = lanes.get(key)
        if (lane === undefined) {
          const fresh: Lane = { waiting: [] }
          lanes.set(key, fresh)
          const ended = Effect.sync(() => {
            if (lanes.get(key) === fresh) lanes.delete(key)
          })
          return Effect.asVoid(fork(Effect.onInterrupt(drain(key, fresh, work), () => ended)))
        }
        if (lane.waiting.length >= maxWaiting) return Effect.asVoid(fork(onFull))
        lane.waiting.push(work)
        return Effect.void
      })

    return { run }
  })
