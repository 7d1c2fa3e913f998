/**
 * OpenAI Conversations (`/v1/conversations`): a conversation's metadata and its items, in order. `layerMemory`
 * keeps them in process; `SqliteConversationStore` and `PgConversationStore` beside the other stores persist them.
 *
 * Besides the items, a conversation remembers which session mirrors them (`mirror`): the Responses channel runs
 * a conversation's turns in a session whose history is the conversation's items, so a turn need not resend them.
 * Every change to the items bumps `revision`; the mirror is valid only while `mirror.revision` equals it, so an
 * item added or deleted through the API, a turn that failed, or a crash mid-turn (a claimed mirror stays
 * claimed) all make the next turn start a fresh session from the items. See docs/RESPONSES.md, "Conversations".
 */
import { Context, Effect, Layer, Option } from "effect"
import type * as Time from "../domain/Time.js"

export interface StoredConversation {
  readonly id: string
  /** The user isolation key of the caller that created it; only callers with the same key (or none) see it. */
  readonly userKey?: string
  readonly metadata: Readonly<Record<string, string>>
  readonly createdAt: Time.EpochMillis
  /** The last change (metadata or items); retention counts from here. */
  readonly updatedAt: Time.EpochMillis
  /** Bumped by every change to the items. */
  readonly revision: number
  readonly itemCount: number
  /** The session whose history holds the items as of `revision` (valid only when the revisions are equal). */
  readonly mirror?: { readonly sessionKey: string; readonly revision: number }
}

/** An item as served on the wire (JSON-safe), with its `id`. */
export type ConversationItem = Readonly<Record<string, unknown>> & { readonly id: string }

export interface NewConversation {
  readonly id: string
  readonly userKey?: string | undefined
  readonly metadata: Readonly<Record<string, string>>
  readonly createdAt: Time.EpochMillis
  readonly items: ReadonlyArray<ConversationItem>
}

export interface AppendOptions {
  readonly at: Time.EpochMillis
  /** Refuse (`full`) when the conversation would hold more items than this. */
  readonly maxItems?: number
  /**
   * The turn that produced these items ran in `sessionKey`, whose history held the items as of `ifRevision`:
   * when nothing changed since, that session mirrors the conversation after the append.
   */
  readonly mirror?: { readonly sessionKey: string; readonly ifRevision: number }
}

export type AppendResult =
  | { readonly _tag: "Appended"; readonly conversation: StoredConversation }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Full"; readonly itemCount: number }

export interface ListOptions {
  readonly limit: number
  readonly order: "asc" | "desc"
  /** An item id: list the items after it in `order`. */
  readonly after?: string | undefined
}

export type ListResult =
  | { readonly _tag: "Page"; readonly items: ReadonlyArray<ConversationItem>; readonly hasMore: boolean }
  | { readonly _tag: "AfterNotFound" }

export interface ConversationStoreShape {
  readonly create: (conversation: NewConversation) => Effect.Effect<StoredConversation>
  readonly get: (id: string) => Effect.Effect<Option.Option<StoredConversation>>
  /** Replaces the metadata; none when there is no such conversation. */
  readonly setMetadata: (
    id: string,
    metadata: Readonly<Record<string, string>>,
    at: Time.EpochMillis
  ) => Effect.Effect<Option.Option<StoredConversation>>
  /** Deletes the conversation and its items; false when there was none. */
  readonly delete: (id: string) => Effect.Effect<boolean>
  readonly appendItems: (
    id: string,
    items: ReadonlyArray<ConversationItem>,
    options: AppendOptions
  ) => Effect.Effect<AppendResult>
  readonly listItems: (id: string, options: ListOptions) => Effect.Effect<ListResult>
  /** The most recent `limit` items, oldest first. */
  readonly recentItems: (id: string, limit: number) => Effect.Effect<ReadonlyArray<ConversationItem>>
  readonly getItem: (id: string, itemId: string) => Effect.Effect<Option.Option<ConversationItem>>
  /** Deletes one item; the conversation after it, or none when the conversation or the item is missing. */
  readonly deleteItem: (
    id: string,
    itemId: string,
    at: Time.EpochMillis
  ) => Effect.Effect<Option.Option<StoredConversation>>
  /**
   * Takes the mirror for a turn: true when `sessionKey` mirrors the conversation at `revision` (and nothing
   * changed since); the mirror is then invalid until that turn's append revalidates it.
   */
  readonly claimMirror: (id: string, sessionKey: string, revision: number) => Effect.Effect<boolean>
  /** Invalidates the mirror if it is `sessionKey` (something else wrote to that session). */
  readonly dropMirror: (id: string, sessionKey: string) => Effect.Effect<void>
  /** Deletes conversations not changed since `olderThan` (with their items); returns how many. */
  readonly prune: (olderThan: Time.EpochMillis) => Effect.Effect<number>
}

export class ConversationStore extends Context.Tag("effect-agent-host/ConversationStore")<
  ConversationStore,
  ConversationStoreShape
>() {}

/** The mirror revision of a claimed mirror: never equal to a revision. */
export const CLAIMED = -1

/** An in-process store: for tests, memory mode, and hosts composed without a persistent one. */
export const makeMemory: Effect.Effect<ConversationStoreShape> = Effect.sync(() => {
  interface Entry {
    conversation: StoredConversation
    items: Array<ConversationItem>
  }
  const entries = new Map<string, Entry>()
  const set = (entry: Entry, changes: Partial<StoredConversation>) => {
    entry.conversation = { ...entry.conversation, ...changes, itemCount: entry.items.length }
    return entry.conversation
  }
  return ConversationStore.of({
    create: (input) =>
      Effect.sync(() => {
        const conversation: StoredConversation = {
          id: input.id,
          ...(input.userKey === undefined ? {} : { userKey: input.userKey }),
          metadata: input.metadata,
          createdAt: input.createdAt,
          updatedAt: input.createdAt,
          revision: 0,
          itemCount: input.items.length
        }
        entries.set(input.id, { conversation, items: [...input.items] })
        return conversation
      }),
    get: (id) => Effect.sync(() => Option.map(Option.fromNullable(entries.get(id)), (e) => e.conversation)),
    setMetadata: (id, metadata, at) =>
      Effect.sync(() =>
        Option.map(Option.fromNullable(entries.get(id)), (entry) => set(entry, { metadata, updatedAt: at }))
      ),
    delete: (id) => Effect.sync(() => entries.delete(id)),
    appendItems: (id, items, options) =>
      Effect.sync((): AppendResult => {
        const entry = entries.get(id)
        if (entry === undefined) return { _tag: "Missing" }
        if (options.maxItems !== undefined && entry.items.length + items.length > options.maxItems) {
          return { _tag: "Full", itemCount: entry.items.length }
        }
        const before = entry.conversation.revision
        entry.items.push(...items)
        const revision = before + 1
        const mirror = options.mirror !== undefined && options.mirror.ifRevision === before ?
          { mirror: { sessionKey: options.mirror.sessionKey, revision } } :
          {}
        return { _tag: "Appended", conversation: set(entry, { revision, updatedAt: options.at, ...mirror }) }
      }),
    listItems: (id, options) =>
      Effect.sync((): ListResult => {
        const all = entries.get(id)?.items ?? []
        const ordered = options.order === "asc" ? all : [...all].reverse()
        let start = 0
        if (options.after !== undefined) {
          const at = ordered.findIndex((item) => item.id === options.after)
          if (at === -1) return { _tag: "AfterNotFound" }
          start = at + 1
        }
        return {
          _tag: "Page",
          items: ordered.slice(start, start + options.limit),
          hasMore: start + options.limit < ordered.length
        }
      }),
    recentItems: (id, limit) =>
      Effect.sync(() => {
        const all = entries.get(id)?.items ?? []
        return limit <= 0 ? [] : all.slice(Math.max(0, all.length - limit))
      }),
    getItem: (id, itemId) =>
      Effect.sync(() => Option.fromNullable(entries.get(id)?.items.find((item) => item.id === itemId))),
    deleteItem: (id, itemId, at) =>
      Effect.sync(() => {
        const entry = entries.get(id)
        if (entry === undefined) return Option.none()
        const index = entry.items.findIndex((item) => item.id === itemId)
        if (index === -1) return Option.none()
        entry.items.splice(index, 1)
        return Option.some(set(entry, { revision: entry.conversation.revision + 1, updatedAt: at }))
      }),
    claimMirror: (id, sessionKey, revision) =>
      Effect.sync(() => {
        const entry = entries.get(id)
        const current = entry?.conversation
        if (
          entry === undefined || current === undefined || current.revision !== revision ||
          current.mirror?.sessionKey !== sessionKey || current.mirror.revision !== revision
        ) return false
        set(entry, { mirror: { sessionKey, revision: CLAIMED } })
        return true
      }),
    dropMirror: (id, sessionKey) =>
      Effect.sync(() => {
        const entry = entries.get(id)
        if (entry !== undefined && entry.conversation.mirror?.sessionKey === sessionKey) {
          set(entry, { mirror: { sessionKey, revision: CLAIMED } })
        }
      }),
    prune: (olderThan) =>
      Effect.sync(() => {
        let n = 0
        for (const [id, entry] of entries) {
          if (entry.conversation.updatedAt < olderThan) {
            entries.delete(id)
            n++
          }
        }
        return n
      })
  })
})

export const layerMemory: Layer.Layer<ConversationStore> = Layer.effect(ConversationStore, makeMemory)
