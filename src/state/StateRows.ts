/**
 * What the SQL state stores (SQLite and Postgres) share: decoding stored rows, quarantining the ones that no
 * longer decode (corrupt JSON, schema drift: the row moves to the `quarantine` table with the reason, a warning is
 * logged, and the read goes on with the rest), and every read and delete, which are the same SQL on both.
 *
 * What differs stays with each store: writes (SQLite group-commits them through `StateWriter`, Postgres runs one
 * statement per write on the pool), the Responses status query, and the column that orders rows by activity
 * (`Dialect.activityOrder`).
 *
 * SQL failures are infrastructure failures the caller cannot act on: they become defects here.
 */
import type { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import { Effect, Either, Option, ParseResult, Schema } from "effect"
import { ChannelIdentity } from "../domain/Identity.js"
import { Message } from "../domain/Message.js"
import * as Time from "../domain/Time.js"
import type { IdentityLink, QuarantineRecord, StateStoreShape, StoredEvent, StoredResponse } from "./StateStore.js"

const MessageJson = Schema.parseJson(Message)
const IdentityJson = Schema.parseJson(ChannelIdentity)
const UnknownJson = Schema.parseJson()
const ItemsJson = Schema.parseJson(Schema.Array(Schema.Unknown))
const ClaimsJson = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

/** A stored history row's message, or why it no longer decodes. */
export const decodeMessage = Schema.decodeUnknownEither(MessageJson)
const decodeIdentity = Schema.decodeUnknownEither(IdentityJson)
const decodeJson = Schema.decodeUnknownEither(UnknownJson)
const decodeItems = Schema.decodeUnknownEither(ItemsJson)
const decodeClaims = Schema.decodeUnknownEither(ClaimsJson)

/** The wire `status` of a response resource ("" when it has none), stored beside it for the status index. */
export const statusOf = (response: unknown): string => {
  if (response === null || typeof response !== "object") return ""
  const status = (response as { readonly status?: unknown }).status
  return typeof status === "string" ? status : ""
}

/** JSON for values the host produced itself (wire JSON); `null` stands in for `undefined`. */
export const toJson = (value: unknown): string => JSON.stringify(value) ?? "null"

/**
 * `Message` and `ChannelIdentity` are plain structs with no transformations (their encoded form is their type), so
 * `JSON.stringify` writes what `Schema.encode` would, without a Schema pass per message (test/StateStore.test.ts
 * round-trips every content kind through the decoder).
 */
export const encodeMessage = (message: Message): string => JSON.stringify(message)
export const encodeIdentity = (identity: ChannelIdentity): string => JSON.stringify(identity)

const reasonOf = (error: ParseResult.ParseError) => ParseResult.TreeFormatter.formatErrorSync(error)

/** An epoch-millis column: SQLite returns a number, node-postgres a string for `BIGINT` (it may exceed 2^53). */
export type Millis = string | number

const millis = (value: Millis) => Time.fromMillis(Number(value))

interface HistoryRow {
  readonly id: Millis
  readonly message: string
}
interface IdentityRow {
  readonly channel: string
  readonly identity: string
}
export interface ResponseRow {
  readonly id: string
  readonly sessionKey: string | null
  readonly userKey: string | null
  readonly response: string
  readonly inputItems: string
  readonly createdAt: Millis
}
interface EventRow {
  readonly sequence: number
  readonly event: string
}
interface LinkRow {
  readonly channel: string
  readonly nativeId: string
  readonly isolationKey: string
  readonly subject: string
  readonly claims: string
  readonly linkedAt: Millis
}
interface QuarantineRow {
  readonly sourceTable: string
  readonly key: string
  readonly reason: string
  readonly raw: string
  readonly at: Millis
}

export interface Dialect {
  /**
   * The column whose order is activity order (identities, links): SQLite's `rowid`, renewed by `INSERT OR
   * REPLACE`; Postgres's `ord`, renewed from a sequence on every upsert.
   */
  readonly activityOrder: "rowid" | "ord"
}

/** The store operations that are the same SQL on every dialect. */
export type Reads = Pick<
  StateStoreShape,
  | "getAlias"
  | "identities"
  | "activeChannel"
  | "findKeyByIdentity"
  | "loadHistory"
  | "getResponse"
  | "deleteResponse"
  | "responseEvents"
  | "pruneResponses"
  | "getLink"
  | "deleteLink"
  | "linksFor"
  | "getCursor"
  | "pruneSeen"
  | "quarantine"
  | "quarantined"
>

export interface StateRows {
  readonly reads: Reads
  /** The columns of a `ResponseRow`, for a store's own response queries. */
  readonly responseColumns: Fragment
  /** Decodes response rows, quarantining those that no longer decode. */
  readonly decodeResponses: (rows: ReadonlyArray<ResponseRow>) => Effect.Effect<ReadonlyArray<StoredResponse>>
}

const somes = <A>(decoded: ReadonlyArray<Option.Option<A>>): ReadonlyArray<A> => decoded.flatMap(Option.toArray)

export const make = (sql: SqlClient.SqlClient, dialect: Dialect): StateRows => {
  const order = sql.literal(dialect.activityOrder)

  const insertQuarantine = (record: QuarantineRecord) =>
    sql`INSERT INTO quarantine (source_table, key, reason, raw, at)
        VALUES (${record.table}, ${record.key}, ${record.reason}, ${record.raw}, ${record.at})`

  /** Moves a row that no longer decodes out of the way: one transaction, then a warning. */
  const quarantineRow = (
    table: string,
    key: string,
    raw: string,
    reason: string,
    remove: Effect.Effect<unknown, SqlError>
  ) =>
    Effect.gen(function*() {
      const at = yield* Time.now
      yield* sql.withTransaction(Effect.zipRight(insertQuarantine({ table, key, reason, raw, at }), remove))
      yield* Effect.logWarning("quarantined a stored row that no longer decodes").pipe(
        Effect.annotateLogs({ table, key, reason })
      )
    }).pipe(Effect.orDie)

  /** Decodes `raw`, or quarantines its row and yields none. */
  const decodeOrQuarantine = <A>(
    decoded: Either.Either<A, ParseResult.ParseError>,
    table: string,
    key: string,
    raw: string,
    remove: Effect.Effect<unknown, SqlError>
  ): Effect.Effect<Option.Option<A>> =>
    Either.isRight(decoded) ?
      Effect.succeed(Option.some(decoded.right)) :
      Effect.as(quarantineRow(table, key, raw, reasonOf(decoded.left), remove), Option.none())

  const deleteResponseRows = (id: string) =>
    sql.withTransaction(
      Effect.zipRight(
        sql`DELETE FROM response_events WHERE response_id = ${id}`,
        sql<{ readonly id: string }>`DELETE FROM responses WHERE id = ${id} RETURNING id`
      )
    )

  const decodeResponse = (row: ResponseRow): Effect.Effect<Option.Option<StoredResponse>> => {
    const response = decodeJson(row.response)
    const items = decodeItems(row.inputItems)
    if (Either.isRight(response) && Either.isRight(items)) {
      return Effect.succeed(Option.some({
        id: row.id,
        sessionKey: row.sessionKey ?? undefined,
        ...(row.userKey === null ? {} : { userKey: row.userKey }),
        response: response.right,
        inputItems: items.right,
        createdAt: millis(row.createdAt)
      }))
    }
    const reason = Either.isLeft(response)
      ? reasonOf(response.left)
      : reasonOf((items as Either.Left<ParseResult.ParseError, unknown>).left)
    return Effect.as(
      quarantineRow("responses", row.id, toJson(row), reason, deleteResponseRows(row.id)),
      Option.none()
    )
  }
  const decodeResponses = (rows: ReadonlyArray<ResponseRow>) => Effect.map(Effect.forEach(rows, decodeResponse), somes)

  const decodeLink = (row: LinkRow): Effect.Effect<Option.Option<IdentityLink>> =>
    Effect.map(
      decodeOrQuarantine(
        decodeClaims(row.claims),
        "links",
        `${row.channel}:${row.nativeId}`,
        toJson(row),
        sql`DELETE FROM links WHERE channel = ${row.channel} AND native_id = ${row.nativeId}`
      ),
      Option.map((claims): IdentityLink => ({
        channel: row.channel,
        nativeId: row.nativeId,
        isolationKey: row.isolationKey,
        subject: row.subject,
        claims,
        linkedAt: millis(row.linkedAt)
      }))
    )

  const linkColumns = sql`channel, native_id AS "nativeId", isolation_key AS "isolationKey", subject, claims,
    linked_at AS "linkedAt"`
  const responseColumns = sql.literal(`id, session_key AS "sessionKey", user_key AS "userKey", response,
    input_items AS "inputItems", created_at AS "createdAt"`)

  const reads: Reads = {
    getAlias: (key) =>
      sql<{ readonly alias: string }>`SELECT alias FROM session_aliases WHERE key = ${key}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.alias)),
        Effect.orDie
      ),

    identities: (key) =>
      sql<IdentityRow>`SELECT channel, identity FROM identities WHERE key = ${key} ORDER BY ${order} DESC`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            decodeOrQuarantine(
              decodeIdentity(row.identity),
              "identities",
              `${key}:${row.channel}`,
              row.identity,
              sql`DELETE FROM identities WHERE key = ${key} AND channel = ${row.channel}`
            ))
        ),
        Effect.map(somes)
      ),
    activeChannel: (key) =>
      sql<{ readonly channel: string }>`SELECT channel FROM identities WHERE key = ${key}
        ORDER BY ${order} DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.channel)), Effect.orDie),
    findKeyByIdentity: (channel, nativeId) =>
      sql<{ readonly key: string }>`SELECT key FROM identities WHERE channel = ${channel} AND native_id = ${nativeId}
        ORDER BY ${order} DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.key)), Effect.orDie),

    loadHistory: Effect.fnUntraced(function*(sessionId: string, limit?: number) {
      const rows = limit === undefined ?
        yield* sql<HistoryRow>`SELECT id, message FROM chat_history WHERE session_id = ${sessionId}
          ORDER BY id`.pipe(Effect.orDie) :
        // The most recent `limit` rows (the index is (session_id, id)), returned oldest first.
        (yield* sql<HistoryRow>`SELECT id, message FROM chat_history WHERE session_id = ${sessionId}
          ORDER BY id DESC LIMIT ${limit}`.pipe(Effect.orDie)).slice().reverse()
      const messages: Array<Message> = []
      for (const row of rows) {
        const decoded = decodeMessage(row.message)
        if (Either.isRight(decoded)) messages.push(decoded.right)
        else {
          yield* quarantineRow(
            "chat_history",
            `${sessionId}#${row.id}`,
            row.message,
            reasonOf(decoded.left),
            sql`DELETE FROM chat_history WHERE id = ${row.id}`
          )
        }
      }
      return messages
    }),

    getResponse: (id) =>
      sql<ResponseRow>`SELECT ${responseColumns} FROM responses WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : decodeResponse(rows[0]))
      ),
    deleteResponse: (id) => deleteResponseRows(id).pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
    responseEvents: (id, after) =>
      sql<EventRow>`SELECT sequence, event FROM response_events WHERE response_id = ${id} AND sequence > ${after}
        ORDER BY sequence`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            decodeOrQuarantine(
              decodeJson(row.event),
              "response_events",
              `${id}#${row.sequence}`,
              row.event,
              sql`DELETE FROM response_events WHERE response_id = ${id} AND sequence = ${row.sequence}`
            ).pipe(Effect.map(Option.map((event): StoredEvent => ({ sequence: row.sequence, event })))))
        ),
        Effect.map(somes)
      ),
    pruneResponses: (olderThan) =>
      sql.withTransaction(
        Effect.zipRight(
          sql`DELETE FROM response_events
              WHERE response_id IN (SELECT id FROM responses WHERE created_at < ${olderThan})`,
          sql<{ readonly id: string }>`DELETE FROM responses WHERE created_at < ${olderThan} RETURNING id`
        )
      ).pipe(Effect.map((rows) => rows.length), Effect.orDie),

    getLink: (channel, nativeId) =>
      sql<LinkRow>`SELECT ${linkColumns} FROM links WHERE channel = ${channel} AND native_id = ${nativeId}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : decodeLink(rows[0]))
      ),
    deleteLink: (channel, nativeId) =>
      sql<{ readonly channel: string }>`DELETE FROM links WHERE channel = ${channel} AND native_id = ${nativeId}
        RETURNING channel`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
    linksFor: (isolationKey) =>
      sql<LinkRow>`SELECT ${linkColumns} FROM links WHERE isolation_key = ${isolationKey}
        ORDER BY linked_at, ${order}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => Effect.forEach(rows, decodeLink)),
        Effect.map(somes)
      ),

    getCursor: (name) =>
      sql<{ readonly value: string }>`SELECT value FROM cursors WHERE name = ${name}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
        Effect.orDie
      ),

    // Oldest windows first, `limit` rows per statement (index seen_ids_by_keep_until): the write lock is held
    // briefly, and a backlog goes over several calls.
    pruneSeen: (before, limit) =>
      sql<{ readonly id: string }>`DELETE FROM seen_ids WHERE (namespace, id) IN (
          SELECT namespace, id FROM seen_ids WHERE keep_until < ${before} ORDER BY keep_until LIMIT ${limit}
        ) RETURNING id`.pipe(Effect.map((rows) => rows.length), Effect.orDie),

    quarantine: (record) => insertQuarantine(record).pipe(Effect.asVoid, Effect.orDie),
    quarantined: sql<QuarantineRow>`SELECT source_table AS "sourceTable", key, reason, raw, at FROM quarantine
      ORDER BY id`.pipe(
      Effect.map((rows) =>
        rows.map((row): QuarantineRecord => ({
          table: row.sourceTable,
          key: row.key,
          reason: row.reason,
          raw: row.raw,
          at: millis(row.at)
        }))
      ),
      Effect.orDie
    )
  }

  return { reads, responseColumns, decodeResponses }
}
