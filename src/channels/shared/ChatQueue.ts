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
 * here so a flooding chat holds no more than that.
 *
 * The whole queue is bounded too (`maxPending` updates queued or being handled, across chats): without it a
 * burst from many chats starts that many turns at once, each with its own Bot API calls, and the host spends its
 * time opening connections instead of answering. `offer` says which bound refused an update, so the channel can
 * answer something its platform retries (a webhook's 429) instead of accepting an update it would then drop.
 */
import type { Scope } from "effect"
import { Duration, Effect, Fiber, FiberSet } from "effect"
import { wallClockSleep } from "../../domain/Time.js"

/** Like the session mailbox's default bound (`AGENT_HOST_SESSION_QUEUE`). */
export const defaultMaxWaiting = 16

/** Updates queued or being handled at once, all chats together. */
export const defaultMaxPending = 1024

/**
 * What `offer` did: `queued`; `chat_full` when the chat already has `maxWaiting` updates waiting; `full` when
 * the queue holds `maxPending` updates. Refused work is not kept.
 */
export type Offered = "queued" | "chat_full" | "full"

export interface ChatQueue {
  /**
   * Queues `work` behind the chat's earlier work and runs it in the background; without a key, at once (still
   * counted against `maxPending`). Decided synchronously: what is refused was never queued.
   */
  readonly offer: (key: string | undefined, work: Effect.Effect<void>) => Effect.Effect<Offered>
  /** Waits until `offer(key, ...)` would queue (a transport that can hold back, like polling, waits here). */
  readonly awaitRoom: (key: string | undefined) => Effect.Effect<void>
  /** `offer`, running `onFull` in the background when it refuses. */
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

export const make = (options: {
  readonly maxWaiting?: number
  readonly maxPending?: number
} = {}): Effect.Effect<ChatQueue, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxWaiting = Math.max(0, options.maxWaiting ?? defaultMaxWaiting)
    const maxPending = Math.max(1, options.maxPending ?? defaultMaxPending)
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
    // Updates queued or being handled; each item gives its place back when it ends, however it ends.
    let pending = 0
    // Who waits for room (`awaitRoom`): a poller or two, checked when an item ends.
    const roomWaiters = new Set<{ readonly key: string | undefined; readonly wake: () => void }>()
    const hasRoom = (key: string | undefined) =>
      pending < maxPending && (key === undefined || (lanes.get(key)?.waiting.length ?? 0) < maxWaiting)
    const wakeWaiters = () => {
      for (const waiter of roomWaiters) if (hasRoom(waiter.key)) waiter.wake()
    }
    const counted = (work: Effect.Effect<void>) =>
      Effect.ensuring(
        work,
        Effect.sync(() => {
          pending--
          wakeWaiters()
        })
      )

    const awaitRoom = (key: string | undefined): Effect.Effect<void> =>
      Effect.suspend(() =>
        hasRoom(key) ? Effect.void : Effect.async<void>((resume) => {
          const waiter = {
            key,
            wake: () => {
              roomWaiters.delete(waiter)
              resume(Effect.void)
            }
          }
          roomWaiters.add(waiter)
          return Effect.sync(() => roomWaiters.delete(waiter))
        })
      )

    const drain = (key: string, lane: Lane, work: Effect.Effect<void>): Effect.Effect<void> =>
      Effect.zipRight(
        work,
        Effect.suspend(() => {
          const next = lane.waiting.shift()
          if (roomWaiters.size > 0) wakeWaiters()
          if (next !== undefined) return drain(key, lane, next)
          lanes.delete(key)
          return Effect.void
        })
      )

    // Interruptible explicitly: the caller may be an HTTP handler running uninterruptibly, and a forked fiber
    // inherits that, which would make shutdown (and stopping the typing and edit loops) hang.
    const fork = (effect: Effect.Effect<void>) => FiberSet.run(fibers, Effect.interruptible(effect))

    const offer = (key: string | undefined, work: Effect.Effect<void>): Effect.Effect<Offered> =>
      Effect.suspend(() => {
        if (pending >= maxPending) return Effect.succeed<Offered>("full")
        if (key === undefined) {
          pending++
          return Effect.as(fork(counted(work)), "queued" as const)
        }
        const lane = lanes.get(key)
        if (lane === undefined) {
          pending++
          const fresh: Lane = { waiting: [] }
          lanes.set(key, fresh)
          // Interrupted (shutdown): the lane goes, and the items still waiting give their places back.
          const ended = Effect.sync(() => {
            if (lanes.get(key) === fresh) lanes.delete(key)
            pending -= fresh.waiting.length
            fresh.waiting.length = 0
          })
          return Effect.as(fork(Effect.onInterrupt(drain(key, fresh, counted(work)), () => ended)), "queued" as const)
        }
        if (lane.waiting.length >= maxWaiting) return Effect.succeed<Offered>("chat_full")
        pending++
        lane.waiting.push(counted(work))
        return Effect.succeed<Offered>("queued")
      })

    const run = (key: string | undefined, work: Effect.Effect<void>, onFull: Effect.Effect<void>) =>
      Effect.flatMap(offer(key, work), (offered) => offered === "queued" ? Effect.void : Effect.asVoid(fork(onFull)))

    return { offer, awaitRoom, run }
  })
