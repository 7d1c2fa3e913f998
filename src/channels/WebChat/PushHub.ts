/**
 * Live pushes for the web chat: per browser identity, a bounded in-memory buffer of recent events and the
 * open page subscriptions. Events are numbered per identity (`<epoch>-<seq>`, the epoch changes every boot)
 * so a page resumes with `Last-Event-ID`; a page without a usable id gets everything still buffered.
 * Buffers are bounded by age, count and bytes, and so is the number of identities kept: nothing here
 * survives a restart.
 */
import type { Scope } from "effect"
import { Clock, Duration, Effect, Exit, Mailbox, Stream } from "effect"
import { issueId } from "../../domain/Ids.js"

export interface PushEvent {
  readonly _tag: "PushEvent"
  /** `<epoch>-<seq>`: the SSE event id. */
  readonly id: string
  readonly seq: number
  /** The SSE `data` payload (JSON). */
  readonly data: string
  readonly at: number
  readonly dedupeKey: string
}

/** Emitted first by a subscription, once it is registered: from then on no push for the identity is missed. */
export interface Subscribed {
  readonly _tag: "Subscribed"
}
export const subscribed: Subscribed = { _tag: "Subscribed" }

export interface Limits {
  /** How long an event stays replayable (default 10 minutes). */
  readonly ttl: Duration.DurationInput
  /** Events kept per identity; older ones are dropped first (default 100). */
  readonly maxEvents: number
  /** Bytes of event data kept per identity (default 256 KiB). */
  readonly maxBytesPerIdentity: number
  /** Bytes of event data kept in all (default 32 MiB); idle identities are evicted first. */
  readonly maxTotalBytes: number
  /** Identities with a buffer or a subscription (default 10,000); the least recently active idle one goes. */
  readonly maxIdentities: number
  /** Open subscriptions per identity (default 16); the oldest is closed when a new one exceeds it. */
  readonly maxSubscribers: number
}

export const defaultLimits: Limits = {
  ttl: Duration.minutes(10),
  maxEvents: 100,
  maxBytesPerIdentity: 256 * 1024,
  maxTotalBytes: 32 * 1024 * 1024,
  maxIdentities: 10_000,
  maxSubscribers: 16
}

interface Box {
  readonly events: Array<PushEvent>
  readonly keys: Set<string>
  readonly subscribers: Set<Mailbox.Mailbox<PushEvent>>
  nextSeq: number
  bytes: number
}

export interface PushHub {
  /** Buffers an event for `user` and hands it to the open pages; a repeated `dedupeKey` is ignored. */
  readonly publish: (user: string, dedupeKey: string, data: string) => Effect.Effect<void>
  /**
   * `Subscribed`, then the events after `lastEventId` (or all buffered, when it is absent or from another boot),
   * then live ones.
   */
  readonly subscribe: (user: string, lastEventId: string | undefined) => Stream.Stream<Subscribed | PushEvent>
  /** Drops expired events (run periodically). */
  readonly sweep: Effect.Effect<void>
  readonly stats: Effect.Effect<{ readonly identities: number; readonly subscribers: number; readonly bytes: number }>
}

/** A hub whose subscriptions end when `scope` closes (server shutdown does not wait for open pages). */
export const make = (limits: Partial<Limits> = {}): Effect.Effect<PushHub, never, Scope.Scope> =>
  Effect.gen(function*() {
    const l: Limits = { ...defaultLimits, ...limits }
    const ttlMillis = Duration.toMillis(l.ttl)
    const epoch = yield* issueId()
    // Map order is activity order: a box is re-inserted when used, so the first idle box is the least recent.
    const boxes = new Map<string, Box>()
    let totalBytes = 0

    const touch = (user: string): Box => {
      let box = boxes.get(user)
      if (box !== undefined) {
        boxes.delete(user)
        boxes.set(user, box)
        return box
      }
      box = { events: [], keys: new Set(), subscribers: new Set(), nextSeq: 1, bytes: 0 }
      boxes.set(user, box)
      if (boxes.size > l.maxIdentities) evictIdle(user, () => boxes.size > l.maxIdentities)
      return box
    }

    const dropOldest = (box: Box) => {
      const event = box.events.shift()
      if (event === undefined) return
      box.keys.delete(event.dedupeKey)
      box.bytes -= event.data.length
      totalBytes -= event.data.length
    }

    const evictIdle = (keep: string, over: () => boolean) => {
      for (const [user, box] of boxes) {
        if (!over()) return
        if (user === keep || box.subscribers.size > 0) continue
        while (box.events.length > 0) dropOldest(box)
        boxes.delete(user)
      }
    }

    const prune = (user: string, box: Box, now: number) => {
      while (box.events.length > 0 && box.events[0]!.at + ttlMillis <= now) dropOldest(box)
      if (box.events.length === 0 && box.subscribers.size === 0) boxes.delete(user)
    }

    const publish = (user: string, dedupeKey: string, data: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          const box = touch(user)
          if (box.keys.has(dedupeKey)) return
          const seq = box.nextSeq++
          const event: PushEvent = { _tag: "PushEvent", id: `${epoch}-${seq}`, seq, data, at: now, dedupeKey }
          box.events.push(event)
          box.keys.add(dedupeKey)
          box.bytes += data.length
          totalBytes += data.length
          while (
            box.events.length > 1 &&
            (box.events.length > l.maxEvents || box.bytes > l.maxBytesPerIdentity ||
              box.events[0]!.at + ttlMillis <= now)
          ) dropOldest(box)
          if (totalBytes > l.maxTotalBytes) evictIdle(user, () => totalBytes > l.maxTotalBytes)
          for (const mailbox of box.subscribers) mailbox.unsafeOffer(event)
        }))

    const parseId = (lastEventId: string | undefined): number | undefined => {
      if (lastEventId === undefined) return undefined
      const dash = lastEventId.lastIndexOf("-")
      if (dash <= 0 || lastEventId.slice(0, dash) !== epoch) return undefined
      const seq = Number(lastEventId.slice(dash + 1))
      return Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined
    }

    const subscribe = (user: string, lastEventId: string | undefined): Stream.Stream<Subscribed | PushEvent> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const mailbox = yield* Mailbox.make<PushEvent>({ capacity: l.maxEvents, strategy: "sliding" })
        // Registration and replay happen in one synchronous step, so no event is missed or sent twice.
        const replay = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const box = touch(user)
            prune(user, box, now)
            boxes.set(user, box)
            if (box.subscribers.size >= l.maxSubscribers) {
              const oldest = box.subscribers.values().next().value
              if (oldest !== undefined) {
                box.subscribers.delete(oldest)
                oldest.unsafeDone(Exit.void)
              }
            }
            box.subscribers.add(mailbox)
            const after = parseId(lastEventId)
            return after === undefined ? [...box.events] : box.events.filter((e) => e.seq > after)
          }),
          () =>
            Effect.sync(() => {
              const box = boxes.get(user)
              if (box === undefined) return
              box.subscribers.delete(mailbox)
              if (box.events.length === 0 && box.subscribers.size === 0) boxes.delete(user)
            })
        )
        return Stream.concat(
          Stream.fromIterable<Subscribed | PushEvent>([subscribed, ...replay]),
          Mailbox.toStream(mailbox)
        )
      }))

    const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        for (const [user, box] of [...boxes]) prune(user, box, now)
      }))

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const box of boxes.values()) {
          for (const mailbox of box.subscribers) mailbox.unsafeDone(Exit.void)
          box.subscribers.clear()
        }
      })
    )

    return {
      publish,
      subscribe,
      sweep,
      stats: Effect.sync(() => {
        let subscribers = 0
        for (const box of boxes.values()) subscribers += box.subscribers.size
        return { identities: boxes.size, subscribers, bytes: totalBytes }
      })
    }
  })
