/**
 * `StateStore` on the shared SQLite database (`StateDb`). Every read decodes its rows; a row that no longer
 * decodes (corrupt JSON, schema drift) is moved to the `quarantine` table with the reason and logged, and the
 * read goes on with the rest, so a bad row never crashes startup or a request.
 *
 * Writes on a turn's path (history, identities, responses and their events, aliases, cursors, seen ids) go through
 * `StateWriter`, group-committed with other turns' writes; each completes once committed, so a read after it (on
 * either connection) sees it. Rare writes (deletes, quarantine, links) stay on the @effect/sql client.
 *
 * SQL failures are infrastructure failures the caller cannot act on: they become defects here.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Either, Layer, Option, ParseResult, Schema } from "effect"
import { ChannelIdentity } from "../../domain/Identity.js"
import { Message } from "../../domain/Message.js"
import * as Time from "../../domain/Time.js"
import type { IdentityLink, QuarantineRecord, StoredEvent, StoredResponse } from "../StateStore.js"
import { StateStore } from "../StateStore.js"
import * as StateDb from "./StateDb.js"
import type { Step } from "./StateWriter.js"
import { StateWriter } from "./StateWriter.js"

const MessageJson = Schema.parseJson(Message)
const IdentityJson = Schema.parseJson(ChannelIdentity)
const UnknownJson = Schema.parseJson()
const ItemsJson = Schema.parseJson(Schema.Array(Schema.Unknown))
const ClaimsJson = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

const decodeMessage = Schema.decodeUnknownEither(MessageJson)
const decodeIdentity = Schema.decodeUnknownEither(IdentityJson)
const decodeJson = Schema.decodeUnknownEither(UnknownJson)
const decodeItems = Schema.decodeUnknownEither(ItemsJson)
const decodeClaims = Schema.decodeUnknownEither(ClaimsJson)

/** JSON for values the host produced itself (wire JSON); `null` stands in for `undefined`. */
const toJson = (value: unknown): string => JSON.stringify(value) ?? "null"

/**
 * `Message` and `ChannelIdentity` are plain structs with no transformations (their encoded form is their type), so
 * `JSON.stringify` writes what `Schema.encode` would, without a Schema pass per message (test/StateStore.test.ts
 * round-trips every content kind through the decoder).
 */
const encodeMessage = (message: Message): string => JSON.stringify(message)
const encodeIdentity = (identity: ChannelIdentity): string => JSON.stringify(identity)

const insertHistory = "INSERT INTO chat_history (session_id, message) VALUES (?, ?)"
// REPLACE (not UPSERT) so the row gets a fresh rowid: rowid order is activity order.
const replaceIdentity =
  "INSERT OR REPLACE INTO identities (key, channel, native_id, identity, seen_at) VALUES (?, ?, ?, ?, ?)"
const replaceResponse = "INSERT OR REPLACE INTO responses (id, session_key, user_key, response, input_items, " +
  "created_at) VALUES (?, ?, ?, ?, ?, ?)"
const replaceEvent = "INSERT OR REPLACE INTO response_events (response_id, sequence, event) VALUES (?, ?, ?)"
const upsertAlias = "INSERT INTO session_aliases (key, alias) VALUES (?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET alias = excluded.alias"
const upsertCursor = "INSERT INTO cursors (name, value) VALUES (?, ?) " +
  "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
const insertSeen = "INSERT INTO seen_ids (namespace, id) VALUES (?, ?) ON CONFLICT DO NOTHING"

const reasonOf = (error: ParseResult.ParseError) => ParseResult.TreeFormatter.formatErrorSync(error)

interface HistoryRow {
  readonly id: number
  readonly message: string
}
interface IdentityRow {
  readonly channel: string
  readonly identity: string
}
interface ResponseRow {
  readonly id: string
  readonly sessionKey: string | null
  readonly userKey: string | null
  readonly response: string
  readonly inputItems: string
  readonly createdAt: number
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
  readonly linkedAt: number
}
interface QuarantineRow {
  readonly sourceTable: string
  readonly key: string
  readonly reason: string
  readonly raw: string
  readonly at: number
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const writer = yield* StateWriter

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
        createdAt: Time.fromMillis(row.createdAt)
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
        linkedAt: Time.fromMillis(row.linkedAt)
      }))
    )

  const identityRows = (key: string) =>
    Effect.flatMap(
      sql<IdentityRow>`SELECT channel, identity FROM identities WHERE key = ${key} ORDER BY rowid DESC`,
      (rows) =>
        Effect.forEach(rows, (row) =>
          decodeOrQuarantine(
            decodeIdentity(row.identity),
            "identities",
            `${key}:${row.channel}`,
            row.identity,
            sql`DELETE FROM identities WHERE key = ${key} AND channel = ${row.channel}`
          ))
    ).pipe(Effect.map((decoded) => decoded.flatMap(Option.toArray)))

  const linkColumns = sql`channel, native_id AS "nativeId", isolation_key AS "isolationKey", subject, claims,
    linked_at AS "linkedAt"`
  const responseColumns =
    sql`id, session_key AS "sessionKey", user_key AS "userKey", response, input_items AS "inputItems",
    created_at AS "createdAt"`

  return StateStore.of({
    getAlias: (key) =>
      sql<{ readonly alias: string }>`SELECT alias FROM session_aliases WHERE key = ${key}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.alias)),
        Effect.orDie
      ),
    setAlias: (key, alias) => writer.write((statement) => void statement(upsertAlias).run(key, alias)),

    recordIdentity: (key, identity, at) =>
      writer.write((statement) =>
        void statement(replaceIdentity).run(key, identity.channel, identity.nativeId, encodeIdentity(identity), at)
      ),
    identities: (key) => Effect.orDie(identityRows(key)),
    activeChannel: (key) =>
      sql<{ readonly channel: string }>`SELECT channel FROM identities WHERE key = ${key}
        ORDER BY rowid DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.channel)), Effect.orDie),
    findKeyByIdentity: (channel, nativeId) =>
      sql<{ readonly key: string }>`SELECT key FROM identities WHERE channel = ${channel} AND native_id = ${nativeId}
        ORDER BY rowid DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.key)), Effect.orDie),

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
    appendHistory: (sessionId, messages, options) => {
      if (messages.length === 0) return Effect.void
      const step: Step<void> = (statement) => {
        const insert = statement(insertHistory)
        for (const message of messages) insert.run(sessionId, encodeMessage(message))
      }
      return options?.wait === false ? writer.writeNoWait(step) : writer.write(step)
    },

    putResponse: (response) =>
      writer.write((statement) =>
        void statement(replaceResponse).run(
          response.id,
          response.sessionKey ?? null,
          response.userKey ?? null,
          toJson(response.response),
          toJson(response.inputItems),
          response.createdAt
        )
      ),
    getResponse: (id) =>
      sql<ResponseRow>`SELECT ${responseColumns} FROM responses WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : decodeResponse(rows[0]))
      ),
    deleteResponse: (id) => deleteResponseRows(id).pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
    appendResponseEvents: (id, events) =>
      events.length === 0 ?
        Effect.void :
        writer.write((statement) => {
          const insert = statement(replaceEvent)
          for (const event of events) insert.run(id, event.sequence, toJson(event.event))
        }),
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
        Effect.map((decoded) => decoded.flatMap(Option.toArray))
      ),
    pruneResponses: (olderThan) =>
      sql.withTransaction(
        Effect.zipRight(
          sql`DELETE FROM response_events
              WHERE response_id IN (SELECT id FROM responses WHERE created_at < ${olderThan})`,
          sql<{ readonly id: string }>`DELETE FROM responses WHERE created_at < ${olderThan} RETURNING id`
        )
      ).pipe(Effect.map((rows) => rows.length), Effect.orDie),
    responsesWithStatus: (statuses) =>
      statuses.length === 0 ?
        Effect.succeed([]) :
        // The expression matches the index responses_by_status (migration 0003), so this is no table scan.
        sql<ResponseRow>`SELECT ${responseColumns} FROM responses
          WHERE (CASE WHEN json_valid(response) THEN json_extract(response, '$.status') END)
            IN ${sql.in(statuses)} ORDER BY created_at, id`.pipe(
          Effect.orDie,
          Effect.flatMap((rows) => Effect.forEach(rows, decodeResponse)),
          Effect.map((decoded) => decoded.flatMap(Option.toArray))
        ),

    putLink: (link) =>
      sql`INSERT OR REPLACE INTO links (channel, native_id, isolation_key, subject, claims, linked_at)
          VALUES (${link.channel}, ${link.nativeId}, ${link.isolationKey}, ${link.subject}, ${toJson(link.claims)},
                  ${link.linkedAt})`.pipe(Effect.asVoid, Effect.orDie),
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
        ORDER BY linked_at, rowid`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => Effect.forEach(rows, decodeLink)),
        Effect.map((decoded) => decoded.flatMap(Option.toArray))
      ),

    getCursor: (name) =>
      sql<{ readonly value: string }>`SELECT value FROM cursors WHERE name = ${name}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
        Effect.orDie
      ),
    setCursor: (name, value) => writer.write((statement) => void statement(upsertCursor).run(name, value)),
    markSeen: (namespace, id) => writer.write((statement) => statement(insertSeen).run(namespace, id).changes > 0),

    quarantine: (record) => insertQuarantine(record).pipe(Effect.asVoid, Effect.orDie),
    quarantined: sql<QuarantineRow>`SELECT source_table AS "sourceTable", key, reason, raw, at FROM quarantine
      ORDER BY id`.pipe(
      Effect.map((rows) =>
        rows.map((row): QuarantineRecord => ({
          table: row.sourceTable,
          key: row.key,
          reason: row.reason,
          raw: row.raw,
          at: Time.fromMillis(row.at)
        }))
      ),
      Effect.orDie
    )
  })
})

/** The store on an already open database (shared with other services). */
export const layerWithoutDb: Layer.Layer<StateStore, never, SqlClient.SqlClient | StateWriter> = Layer.effect(
  StateStore,
  make
)

/** The store with its own database in `directory` (lock, WAL, migrations). */
export const layer = (
  options: StateDb.Options
): Layer.Layer<StateStore, StateDb.StateDirLocked | StateDb.StateDirUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(StateDb.layer(options)))
