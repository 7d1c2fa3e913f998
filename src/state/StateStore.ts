/**
 * Everything the host remembers: session aliases, the identity registry (identities seen per key, the active
 * channel), chat history, stored responses, identity links, channel cursors, and quarantined records.
 *
 * `layerMemory` keeps it in process; `SqliteStateStore.layer` (src/state/sqlite) persists it in the state dir, and
 * `Persistence.layerConfig` picks one from config.
 */
import type { Scope } from "effect"
import { Context, Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import type { ChannelIdentity } from "../domain/Identity.js"
import { Message } from "../domain/Message.js"
import type { EpochMillis } from "../domain/Time.js"
import * as Time from "../domain/Time.js"

/** A stored Responses API object: the response JSON, its input items, and its stream events (background). */
export interface StoredResponse {
  readonly id: string
  readonly sessionKey: string | undefined
  /**
   * The user isolation key (trusted `x-agent-user-isolation-key`) of the request that created it; absent when
   * there was none. The Responses channel answers only callers with the same user key (or none, for none).
   */
  readonly userKey?: string
  /** The response resource as served on the wire (JSON-safe). */
  readonly response: unknown
  /**
   * `JSON.stringify(response)`, when the caller has it already (it served it as the body): a store that keeps
   * JSON text writes this instead of serialising the resource again. Write-only: reads never return it.
   */
  readonly responseJson?: string
  /** The input items of the request that created it (JSON-safe). */
  readonly inputItems: ReadonlyArray<unknown>
  /** When it was created (the wire's `created_at` is this in seconds); retention counts from here. */
  readonly createdAt: EpochMillis
}

export interface StoredEvent {
  readonly sequence: number
  readonly event: unknown
}

/** A verified link between a channel identity and a person (for identity linking). */
export interface IdentityLink {
  readonly channel: string
  readonly nativeId: string
  /** The isolation key the person's channels share once linked. */
  readonly isolationKey: string
  readonly subject: string
  readonly claims: Readonly<Record<string, unknown>>
  readonly linkedAt: EpochMillis
}

export interface QuarantineRecord {
  readonly table: string
  readonly key: string
  readonly reason: string
  readonly raw: string
  readonly at: EpochMillis
}

export interface AppendOptions {
  /** False: complete once the write is queued, not once it is stored (default true). */
  readonly wait?: boolean
}

export interface StateStoreShape {
  readonly getAlias: (key: string) => Effect.Effect<Option.Option<string>>
  readonly setAlias: (key: string, alias: string) => Effect.Effect<void>

  /** Records that `identity` was seen on `key` and makes its channel the key's active channel. */
  readonly recordIdentity: (key: string, identity: ChannelIdentity, at: EpochMillis) => Effect.Effect<void>
  /** Identities seen on `key`, one per channel (the latest), most recently active first. */
  readonly identities: (key: string) => Effect.Effect<ReadonlyArray<ChannelIdentity>>
  readonly activeChannel: (key: string) => Effect.Effect<Option.Option<string>>
  /** The isolation key an identity is registered under (indexed, not a scan). */
  readonly findKeyByIdentity: (channel: string, nativeId: string) => Effect.Effect<Option.Option<string>>

  /** The session's messages, oldest first; with `limit`, only the most recent `limit` of them. */
  readonly loadHistory: (sessionId: string, limit?: number) => Effect.Effect<ReadonlyArray<Message>>
  /**
   * Appends to the session's history. Completes once stored (durable on disk for a persistent store); with
   * `wait: false`, once queued: still stored before any later write, for a turn's input that the turn does not
   * need to wait for (its reply's append, which it does wait for, is stored after it).
   */
  readonly appendHistory: (
    sessionId: string,
    messages: ReadonlyArray<Message>,
    options?: AppendOptions
  ) => Effect.Effect<void>

  readonly putResponse: (response: StoredResponse) => Effect.Effect<void>
  readonly getResponse: (id: string) => Effect.Effect<Option.Option<StoredResponse>>
  /** Deletes a response with its input items and events; false when there was none. */
  readonly deleteResponse: (id: string) => Effect.Effect<boolean>
  /** Appends events; an event with a sequence already stored replaces it. */
  readonly appendResponseEvents: (id: string, events: ReadonlyArray<StoredEvent>) => Effect.Effect<void>
  /** Events with `sequence > after`, in order. */
  readonly responseEvents: (id: string, after: number) => Effect.Effect<ReadonlyArray<StoredEvent>>
  /** Deletes responses created before `olderThan` (with their events); returns how many. */
  readonly pruneResponses: (olderThan: EpochMillis) => Effect.Effect<number>
  /**
   * Responses whose wire `status` is one of `statuses` (e.g. `queued`/`in_progress` left by a process that died),
   * oldest first.
   */
  readonly responsesWithStatus: (statuses: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<StoredResponse>>

  readonly putLink: (link: IdentityLink) => Effect.Effect<void>
  readonly getLink: (channel: string, nativeId: string) => Effect.Effect<Option.Option<IdentityLink>>
  readonly deleteLink: (channel: string, nativeId: string) => Effect.Effect<boolean>
  /** Links to `isolationKey`, oldest `linkedAt` first. */
  readonly linksFor: (isolationKey: string) => Effect.Effect<ReadonlyArray<IdentityLink>>

  readonly getCursor: (name: string) => Effect.Effect<Option.Option<string>>
  readonly setCursor: (name: string, value: string) => Effect.Effect<void>
  /**
   * Marks `id` seen in `namespace` for `keepFor` (from now): true the first time, false for a duplicate within
   * that window. An id whose window has passed counts as unseen again (pruned or not), so the window must cover
   * every redelivery the caller dedupes: each caller documents its own.
   */
  readonly markSeen: (namespace: string, id: string, keepFor: Duration.Duration) => Effect.Effect<boolean>
  /**
   * Deletes at most `limit` seen ids whose window ended before `before`; returns how many. The store's layer runs
   * it periodically (`pruneSeenPeriodically`); callers need not.
   */
  readonly pruneSeen: (before: EpochMillis, limit: number) => Effect.Effect<number>

  readonly quarantine: (record: QuarantineRecord) => Effect.Effect<void>
  readonly quarantined: Effect.Effect<ReadonlyArray<QuarantineRecord>>
}

export class StateStore extends Context.Tag("effect-agent-host/StateStore")<StateStore, StateStoreShape>() {}

/** Chat history is stored as encoded messages; this codec is shared by every implementation. */
export const MessagesJson = Schema.parseJson(Schema.Array(Message))

/** The wire `status` of a stored response resource ("" when it has none). */
const statusOf = (response: unknown): string => {
  if (response === null || typeof response !== "object") return ""
  const status = (response as { readonly status?: unknown }).status
  return typeof status === "string" ? status : ""
}

const linkKey = (channel: string, nativeId: string) => `${channel}\u0000${nativeId}`

/** An in-process store: for tests, and for hosts that want no persistence. */
export const makeMemory: Effect.Effect<StateStoreShape> = Effect.sync(() => {
  const aliases = new Map<string, string>()
  // key -> channel -> identity, kept in activity order (latest last)
  const registry = new Map<string, Map<string, ChannelIdentity>>()
  const identityIndex = new Map<string, string>()
  const histories = new Map<string, Array<Message>>()
  const responses = new Map<string, StoredResponse>()
  const events = new Map<string, Array<StoredEvent>>()
  const links = new Map<string, IdentityLink>()
  const cursors = new Map<string, string>()
  // namespace + NUL + id -> the end of its window
  const seen = new Map<string, EpochMillis>()
  const quarantine: Array<QuarantineRecord> = []

  return StateStore.of({
    getAlias: (key) => Effect.sync(() => Option.fromNullable(aliases.get(key))),
    setAlias: (key, alias) => Effect.sync(() => void aliases.set(key, alias)),
    recordIdentity: (key, identity) =>
      Effect.sync(() => {
        let byChannel = registry.get(key)
        if (byChannel === undefined) {
          byChannel = new Map()
          registry.set(key, byChannel)
        }
        byChannel.delete(identity.channel)
        byChannel.set(identity.channel, identity)
        identityIndex.set(linkKey(identity.channel, identity.nativeId), key)
      }),
    identities: (key) => Effect.sync(() => [...(registry.get(key)?.values() ?? [])].reverse()),
    activeChannel: (key) =>
      Effect.sync(() => {
        const byChannel = registry.get(key)
        if (byChannel === undefined) return Option.none()
        let last: string | undefined
        for (const channel of byChannel.keys()) last = channel
        return Option.fromNullable(last)
      }),
    findKeyByIdentity: (channel, nativeId) =>
      Effect.sync(() => Option.fromNullable(identityIndex.get(linkKey(channel, nativeId)))),
    loadHistory: (sessionId, limit) =>
      Effect.sync(() => {
        const history = histories.get(sessionId) ?? []
        return limit === undefined ? history.slice() : history.slice(Math.max(0, history.length - limit))
      }),
    appendHistory: (sessionId, messages) =>
      Effect.sync(() => {
        const history = histories.get(sessionId)
        if (history === undefined) histories.set(sessionId, [...messages])
        else history.push(...messages)
      }),
    putResponse: (response) =>
      Effect.sync(() => {
        if (response.responseJson === undefined) return void responses.set(response.id, response)
        const { responseJson: _, ...stored } = response
        responses.set(response.id, stored)
      }),
    getResponse: (id) => Effect.sync(() => Option.fromNullable(responses.get(id))),
    deleteResponse: (id) =>
      Effect.sync(() => {
        events.delete(id)
        return responses.delete(id)
      }),
    appendResponseEvents: (id, batch) =>
      Effect.sync(() => {
        const list = events.get(id) ?? []
        for (const event of batch) {
          const last = list[list.length - 1]
          if (last === undefined || event.sequence > last.sequence) {
            list.push(event) // the common case: events arrive in order
            continue
          }
          const at = list.findIndex((e) => e.sequence === event.sequence)
          if (at === -1) list.push(event)
          else list[at] = event
          list.sort((a, b) => a.sequence - b.sequence)
        }
        events.set(id, list)
      }),
    responseEvents: (id, after) => Effect.sync(() => (events.get(id) ?? []).filter((e) => e.sequence > after)),
    pruneResponses: (olderThan) =>
      Effect.sync(() => {
        let n = 0
        for (const [id, response] of responses) {
          if (response.createdAt < olderThan) {
            responses.delete(id)
            events.delete(id)
            n++
          }
        }
        return n
      }),
    responsesWithStatus: (statuses) =>
      Effect.sync(() =>
        [...responses.values()]
          .filter((stored) => statuses.includes(statusOf(stored.response)))
          .sort((a, b) => a.createdAt - b.createdAt)
      ),
    putLink: (link) =>
      Effect.sync(() => {
        // delete first so a relinked identity moves to the end, like a replaced row
        const k = linkKey(link.channel, link.nativeId)
        links.delete(k)
        links.set(k, link)
      }),
    getLink: (channel, nativeId) => Effect.sync(() => Option.fromNullable(links.get(linkKey(channel, nativeId)))),
    deleteLink: (channel, nativeId) => Effect.sync(() => links.delete(linkKey(channel, nativeId))),
    linksFor: (isolationKey) =>
      Effect.sync(() =>
        [...links.values()]
          .filter((link) => link.isolationKey === isolationKey)
          .sort((a, b) => a.linkedAt - b.linkedAt)
      ),
    getCursor: (name) => Effect.sync(() => Option.fromNullable(cursors.get(name))),
    setCursor: (name, value) => Effect.sync(() => void cursors.set(name, value)),
    markSeen: (namespace, id, keepFor) =>
      Effect.map(Time.now, (now) => {
        const k = linkKey(namespace, id)
        const keepUntil = seen.get(k)
        if (keepUntil !== undefined && keepUntil >= now) return false
        seen.set(k, Time.plus(now, keepFor))
        return true
      }),
    pruneSeen: (before, limit) =>
      Effect.sync(() => {
        let n = 0
        for (const [k, keepUntil] of seen) {
          if (n >= limit) break
          if (keepUntil < before) {
            seen.delete(k)
            n++
          }
        }
        return n
      }),
    quarantine: (record) => Effect.sync(() => void quarantine.push(record)),
    quarantined: Effect.sync(() => quarantine.slice())
  })
})

/** How often a store's layer prunes expired seen ids, and in what batches. */
export interface SeenPruneSettings {
  /** Between runs (default 5 minutes); the first run is at start. */
  readonly interval: Duration.Duration
  /** Rows per delete (default 500): one statement holds the write lock only this long. */
  readonly batch: number
  /** Batches per run at most (default 100): a backlog is worked off over several runs. */
  readonly maxBatches: number
}

export const defaultSeenPrune: SeenPruneSettings = {
  interval: Duration.minutes(5),
  batch: 500,
  maxBatches: 100
}

/** One prune run: batches of expired seen ids until a short batch or `maxBatches`; returns how many it deleted. */
export const pruneSeenOnce = (
  store: Pick<StateStoreShape, "pruneSeen">,
  settings: SeenPruneSettings = defaultSeenPrune
): Effect.Effect<number> =>
  Effect.flatMap(Time.now, (now) => {
    const loop = (batches: number, total: number): Effect.Effect<number> =>
      batches >= settings.maxBatches ? Effect.succeed(total) : Effect.flatMap(
        store.pruneSeen(now, settings.batch),
        (n) => n < settings.batch ? Effect.succeed(total + n) : loop(batches + 1, total + n)
      )
    return loop(0, 0)
  })

/**
 * Prunes expired seen ids at start and every `interval`, for the life of the scope. A failed run is logged and
 * the next one tries again.
 */
export const pruneSeenPeriodically = (
  store: Pick<StateStoreShape, "pruneSeen">,
  settings: SeenPruneSettings = defaultSeenPrune
): Effect.Effect<void, never, Scope.Scope> =>
  pruneSeenOnce(store, settings).pipe(
    Effect.withSpan("StateStore.pruneSeen"),
    Effect.tap((n) =>
      n > 0 ? Effect.logDebug("pruned expired seen ids").pipe(Effect.annotateLogs({ n })) : Effect.void
    ),
    Effect.catchAllCause((cause) => Effect.logWarning("pruning expired seen ids failed; retrying later", cause)),
    Effect.repeat(Schedule.spaced(settings.interval)),
    Effect.forkScoped,
    Effect.asVoid
  )

/** The in-process store, its expired seen ids pruned periodically (so it stays bounded). */
export const layerMemoryWith = (settings: SeenPruneSettings = defaultSeenPrune): Layer.Layer<StateStore> =>
  Layer.scoped(StateStore, Effect.tap(makeMemory, (store) => pruneSeenPeriodically(store, settings)))

export const layerMemory: Layer.Layer<StateStore> = layerMemoryWith()
