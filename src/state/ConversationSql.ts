/**
 * `ConversationStore` on SQL: the statements SQLite (`sqlite/SqliteConversationStore`) and Postgres
 * (`postgres/PgConversationStore`) share. Tables `conversations` and `conversation_items` (their migrations: SQLite
 * 0006, Postgres 0004). Items are ordered by a per-conversation sequence (`next_seq` on the conversation row), so
 * appends never scan; every change to a conversation is one transaction that reads its row first (`FOR UPDATE` on
 * Postgres, where several hosts may share the tables; SQLite has one connection and one owner).
 *
 * A row that no longer parses (corrupt JSON) is left out of reads rather than failing them. SQL failures are
 * infrastructure failures the caller cannot act on: they become defects here.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import * as Time from "../domain/Time.js"
import type {
  AppendResult,
  ConversationItem,
  ConversationStoreShape,
  ListResult,
  StoredConversation
} from "./ConversationStore.js"
import { CLAIMED, ConversationStore } from "./ConversationStore.js"

export type Dialect = "sqlite" | "pg"

// node-postgres returns BIGINT as a string (epoch millis fit in a double).
type Big = string | number

interface ConversationRow {
  readonly id: string
  readonly userKey: string | null
  readonly metadata: string
  readonly createdAt: Big
  readonly updatedAt: Big
  readonly revision: Big
  readonly itemCount: Big
  readonly nextSeq: Big
  readonly sessionKey: string | null
  readonly sessionRevision: Big | null
}

interface ItemRow {
  readonly item: string
}

const parseObject = (raw: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(raw)
    return value !== null && typeof value === "object" && !Array.isArray(value) ?
      value as Record<string, unknown> :
      undefined
  } catch {
    return undefined
  }
}

const metadataOf = (raw: string): Record<string, string> => {
  const parsed = parseObject(raw) ?? {}
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(parsed)) if (typeof value === "string") out[key] = value
  return out
}

const toConversation = (row: ConversationRow): StoredConversation => ({
  id: row.id,
  ...(row.userKey === null ? {} : { userKey: row.userKey }),
  metadata: metadataOf(row.metadata),
  createdAt: Time.fromMillis(Number(row.createdAt)),
  updatedAt: Time.fromMillis(Number(row.updatedAt)),
  revision: Number(row.revision),
  itemCount: Number(row.itemCount),
  ...(row.sessionKey === null ?
    {} :
    {
      mirror: {
        sessionKey: row.sessionKey,
        revision: row.sessionRevision === null ? CLAIMED : Number(row.sessionRevision)
      }
    })
})

const toItems = (rows: ReadonlyArray<ItemRow>): Array<ConversationItem> =>
  rows.flatMap((row) => {
    const item = parseObject(row.item)
    return item !== undefined && typeof item["id"] === "string" ? [item as ConversationItem] : []
  })

/** Above every sequence: both databases store it as a 32-bit INTEGER. */
const maxSeq = 2_147_483_647

/** Items per INSERT: well inside both databases' limits on bound parameters. */
const insertBatch = 200

export const make = (dialect: Dialect) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql`id, user_key AS "userKey", metadata, created_at AS "createdAt", updated_at AS "updatedAt",
      revision, item_count AS "itemCount", next_seq AS "nextSeq", session_key AS "sessionKey",
      session_revision AS "sessionRevision"`
    const lock = dialect === "pg" ? sql` FOR UPDATE` : sql``

    const read = (id: string) =>
      Effect.map(
        sql<ConversationRow>`SELECT ${columns} FROM conversations WHERE id = ${id}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toConversation)
      )
    /** The row, locked for the rest of the transaction (Postgres). */
    const readForUpdate = (id: string) =>
      Effect.map(
        sql<ConversationRow>`SELECT ${columns} FROM conversations WHERE id = ${id}${lock}`,
        (rows) => Option.fromNullable(rows[0])
      )

    const insertItems = (id: string, firstSeq: number, items: ReadonlyArray<ConversationItem>) =>
      Effect.forEach(
        Array.from({ length: Math.ceil(items.length / insertBatch) }, (_, i) => i * insertBatch),
        (offset) =>
          sql`INSERT INTO conversation_items ${
            sql.insert(
              items.slice(offset, offset + insertBatch).map((item, i) => ({
                conversation_id: id,
                seq: firstSeq + offset + i,
                item_id: item.id,
                item: JSON.stringify(item)
              }))
            )
          }`,
        { discard: true }
      )

    const seqOf = (id: string, itemId: string) =>
      Effect.map(
        sql<{ readonly seq: Big }>`SELECT seq FROM conversation_items
          WHERE conversation_id = ${id} AND item_id = ${itemId} ORDER BY seq LIMIT 1`,
        (rows) => Option.map(Option.fromNullable(rows[0]), (row) => Number(row.seq))
      )

    const store: ConversationStoreShape = {
      create: (input) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO conversations ${
            sql.insert({
              id: input.id,
              user_key: input.userKey ?? null,
              metadata: JSON.stringify(input.metadata),
              created_at: input.createdAt,
              updated_at: input.createdAt,
              revision: 0,
              item_count: input.items.length,
              next_seq: input.items.length,
              session_key: null,
              session_revision: null
            })
          }`
          if (input.items.length > 0) yield* insertItems(input.id, 0, input.items)
          return Option.getOrThrow(yield* read(input.id))
        })).pipe(Effect.orDie, Effect.withSpan("ConversationStore.create")),

      get: (id) => read(id).pipe(Effect.orDie),

      setMetadata: (id, metadata, at) =>
        sql<ConversationRow>`UPDATE conversations SET metadata = ${JSON.stringify(metadata)}, updated_at = ${at}
          WHERE id = ${id} RETURNING ${columns}`.pipe(
          Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toConversation)),
          Effect.orDie
        ),

      delete: (id) =>
        sql.withTransaction(Effect.zipRight(
          sql`DELETE FROM conversation_items WHERE conversation_id = ${id}`,
          sql<{ readonly id: string }>`DELETE FROM conversations WHERE id = ${id} RETURNING id`
        )).pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),

      appendItems: (id, items, options) =>
        sql.withTransaction(Effect.gen(function*() {
          const found = yield* readForUpdate(id)
          if (Option.isNone(found)) return { _tag: "Missing" } as AppendResult
          const row = found.value
          const count = Number(row.itemCount)
          if (options.maxItems !== undefined && count + items.length > options.maxItems) {
            return { _tag: "Full", itemCount: count } as AppendResult
          }
          const before = Number(row.revision)
          const nextSeq = Number(row.nextSeq)
          if (items.length > 0) yield* insertItems(id, nextSeq, items)
          const revision = before + 1
          const mirror = options.mirror !== undefined && options.mirror.ifRevision === before ?
            sql`, session_key = ${options.mirror.sessionKey}, session_revision = ${revision}` :
            sql``
          const updated = yield* sql<ConversationRow>`UPDATE conversations SET revision = ${revision},
            item_count = ${count + items.length}, next_seq = ${nextSeq + items.length},
            updated_at = ${options.at}${mirror} WHERE id = ${id} RETURNING ${columns}`
          return { _tag: "Appended", conversation: toConversation(updated[0]!) } as AppendResult
        })).pipe(Effect.orDie, Effect.withSpan("ConversationStore.appendItems")),

      listItems: (id, options) =>
        Effect.gen(function*() {
          let bound: number | undefined
          if (options.after !== undefined) {
            const seq = yield* seqOf(id, options.after)
            if (Option.isNone(seq)) return { _tag: "AfterNotFound" } as ListResult
            bound = seq.value
          }
          const rows = options.order === "asc" ?
            yield* sql<ItemRow>`SELECT item FROM conversation_items
              WHERE conversation_id = ${id} AND seq > ${bound ?? -1} ORDER BY seq ASC LIMIT ${options.limit + 1}` :
            yield* sql<ItemRow>`SELECT item FROM conversation_items
              WHERE conversation_id = ${id} AND seq < ${bound ?? maxSeq}
              ORDER BY seq DESC LIMIT ${options.limit + 1}`
          return {
            _tag: "Page",
            items: toItems(rows.slice(0, options.limit)),
            hasMore: rows.length > options.limit
          } as ListResult
        }).pipe(Effect.orDie),

      recentItems: (id, limit) =>
        limit <= 0 ?
          Effect.succeed([]) :
          sql<ItemRow>`SELECT item FROM conversation_items WHERE conversation_id = ${id}
            ORDER BY seq DESC LIMIT ${limit}`.pipe(
            Effect.map((rows) => toItems(rows).reverse()),
            Effect.orDie
          ),

      getItem: (id, itemId) =>
        sql<ItemRow>`SELECT item FROM conversation_items WHERE conversation_id = ${id} AND item_id = ${itemId}
          ORDER BY seq LIMIT 1`.pipe(
          Effect.map((rows) => Option.fromNullable(toItems(rows)[0])),
          Effect.orDie
        ),

      deleteItem: (id, itemId, at) =>
        sql.withTransaction(Effect.gen(function*() {
          const found = yield* readForUpdate(id)
          if (Option.isNone(found)) return Option.none<StoredConversation>()
          const seq = yield* seqOf(id, itemId)
          if (Option.isNone(seq)) return Option.none<StoredConversation>()
          yield* sql`DELETE FROM conversation_items WHERE conversation_id = ${id} AND seq = ${seq.value}`
          const updated = yield* sql<ConversationRow>`UPDATE conversations SET revision = revision + 1,
            item_count = item_count - 1, updated_at = ${at} WHERE id = ${id} RETURNING ${columns}`
          return Option.some(toConversation(updated[0]!))
        })).pipe(Effect.orDie),

      claimMirror: (id, sessionKey, revision) =>
        sql<{ readonly id: string }>`UPDATE conversations SET session_revision = ${CLAIMED}
          WHERE id = ${id} AND session_key = ${sessionKey} AND revision = ${revision}
            AND session_revision = ${revision} RETURNING id`.pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.orDie
        ),

      dropMirror: (id, sessionKey) =>
        sql`UPDATE conversations SET session_revision = ${CLAIMED} WHERE id = ${id} AND session_key = ${sessionKey}`
          .pipe(Effect.asVoid, Effect.orDie),

      prune: (olderThan) =>
        sql.withTransaction(Effect.zipRight(
          sql`DELETE FROM conversation_items WHERE conversation_id IN
            (SELECT id FROM conversations WHERE updated_at < ${olderThan})`,
          sql<{ readonly id: string }>`DELETE FROM conversations WHERE updated_at < ${olderThan} RETURNING id`
        )).pipe(Effect.map((rows) => rows.length), Effect.orDie)
    }
    return ConversationStore.of(store)
  })
