/**
 * `StateStore` on Postgres (`PgDb`): the same contract as the SQLite store (test/utils/StateStoreContract.ts), the
 * same decoding, and the same quarantine of rows that no longer decode. Every write is one statement (or one
 * transaction) on the pool and completes once committed; `appendHistory` with `wait: false` waits too, since
 * with a pool only waiting keeps it ordered before the turn's later writes. Several hosts may share the tables:
 * each write is atomic, and ordering within a session is the session owner's business (one writer per session).
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
import * as PgDb from "./PgDb.js"

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

/** The wire `status` of a response resource ("" when it has none), stored beside it for the status index. */
const statusOf = (response: unknown): string => {
  if (response === null || typeof response !== "object") return ""
  const status = (response as { readonly status?: unknown }).status
  return typeof status === "string" ? status : ""
}

const reasonOf = (error: ParseResult.ParseError) => ParseResult.TreeFormatter.formatErrorSync(error)

// node-postgres returns BIGINT as a string (it may exceed 2^53; epoch millis do not).
type BigInt = string | number

interface HistoryRow {
  readonly id: BigInt
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
  readonly createdAt: BigInt
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
  readonly linkedAt: BigInt
}
interface QuarantineRow {
  readonly sourceTable: string
  readonly key: string
  readonly reason: string
  readonly raw: string
  readonly at: BigInt
}

const millis = (value: BigInt) => Time.fromMillis(Number(value))

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

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
  const responseColumns =
    sql`id, session_key AS "sessionKey", user_key AS "userKey", response, input_items AS "inputItems",
    created_at AS "createdAt"`

  const decodeResponses = (rows: ReadonlyArray<ResponseRow>) =>
    Effect.map(Effect.forEach(rows, decodeResponse), (decoded) => decoded.flatMap(Option.toArray))

  return StateStore.of({
    getAlias: (key) =>
      sql<{ readonly alias: string }>`SELECT alias FROM session_aliases WHERE key = ${key}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.alias)),
        Effect.orDie
      ),
    setAlias: (key, alias) =>
      sql`INSERT INTO session_aliases (key, alias) VALUES (${key}, ${alias})
        ON CONFLICT (key) DO UPDATE SET alias = excluded.alias`.pipe(Effect.asVoid, Effect.orDie),

    // A fresh `ord` on every sighting: the highest is the active channel.
    recordIdentity: (key, identity, at) =>
      sql`INSERT INTO identities (key, channel, native_id, identity, seen_at)
        VALUES (${key}, ${identity.channel}, ${identity.nativeId}, ${JSON.stringify(identity)}, ${at})
        ON CONFLICT (key, channel) DO UPDATE SET native_id = excluded.native_id, identity = excluded.identity,
          seen_at = excluded.seen_at, ord = excluded.ord`.pipe(Effect.asVoid, Effect.orDie),
    identities: (key) =>
      sql<IdentityRow>`SELECT channel, identity FROM identities WHERE key = ${key} ORDER BY ord DESC`.pipe(
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
        Effect.map((decoded) => decoded.flatMap(Option.toArray)),
        Effect.orDie
      ),
    activeChannel: (key) =>
      sql<{ readonly channel: string }>`SELECT channel FROM identities WHERE key = ${key}
        ORDER BY ord DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.channel)), Effect.orDie),
    findKeyByIdentity: (channel, nativeId) =>
      sql<{ readonly key: string }>`SELECT key FROM identities WHERE channel = ${channel} AND native_id = ${nativeId}
        ORDER BY ord DESC LIMIT 1`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.key)), Effect.orDie),

    loadHistory: Effect.fnUntraced(function*(sessionId: string, limit?: number) {
      const rows = limit === undefined ?
        yield* sql<HistoryRow>`SELECT id, message FROM chat_history WHERE session_id = ${sessionId}
          ORDER BY id`.pipe(Effect.orDie) :
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
    // `Message` is a plain struct (its encoded form is its type): JSON.stringify writes what Schema.encode would.
    appendHistory: (sessionId, messages) =>
      messages.length === 0 ?
        Effect.void :
        sql`INSERT INTO chat_history ${
          sql.insert(messages.map((message) => ({ session_id: sessionId, message: JSON.stringify(message) })))
        }`.pipe(Effect.asVoid, Effect.orDie),

    putResponse: (response) =>
      sql`INSERT INTO responses (id, session_key, user_key, response, input_items, status, created_at)
        VALUES (${response.id}, ${response.sessionKey ?? null}, ${response.userKey ?? null},
          ${toJson(response.response)}, ${toJson(response.inputItems)}, ${statusOf(response.response)},
          ${response.createdAt})
        ON CONFLICT (id) DO UPDATE SET session_key = excluded.session_key, user_key = excluded.user_key,
          response = excluded.response, input_items = excluded.input_items, status = excluded.status,
          created_at = excluded.created_at`.pipe(Effect.asVoid, Effect.orDie),
    getResponse: (id) =>
      sql<ResponseRow>`SELECT ${responseColumns} FROM responses WHERE id = ${id}`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => rows[0] === undefined ? Effect.succeedNone : decodeResponse(rows[0]))
      ),
    deleteResponse: (id) => deleteResponseRows(id).pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),
    appendResponseEvents: (id, events) => {
      if (events.length === 0) return Effect.void
      // One statement may not name a row twice in ON CONFLICT DO UPDATE: the last event of a sequence wins.
      const bySequence = new Map<number, unknown>()
      for (const event of events) bySequence.set(event.sequence, event.event)
      const rows = [...bySequence].map(([sequence, event]) => ({ response_id: id, sequence, event: toJson(event) }))
      return sql`INSERT INTO response_events ${sql.insert(rows)}
        ON CONFLICT (response_id, sequence) DO UPDATE SET event = excluded.event`.pipe(Effect.asVoid, Effect.orDie)
    },
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
        sql<ResponseRow>`SELECT ${responseColumns} FROM responses WHERE status IN ${sql.in(statuses)}
          ORDER BY created_at, id`.pipe(Effect.orDie, Effect.flatMap(decodeResponses)),

    putLink: (link) =>
      sql`INSERT INTO links (channel, native_id, isolation_key, subject, claims, linked_at)
          VALUES (${link.channel}, ${link.nativeId}, ${link.isolationKey}, ${link.subject}, ${toJson(link.claims)},
                  ${link.linkedAt})
          ON CONFLICT (channel, native_id) DO UPDATE SET isolation_key = excluded.isolation_key,
            subject = excluded.subject, claims = excluded.claims, linked_at = excluded.linked_at,
            ord = excluded.ord`.pipe(Effect.asVoid, Effect.orDie),
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
        ORDER BY linked_at, ord`.pipe(
        Effect.orDie,
        Effect.flatMap((rows) => Effect.forEach(rows, decodeLink)),
        Effect.map((decoded) => decoded.flatMap(Option.toArray))
      ),

    getCursor: (name) =>
      sql<{ readonly value: string }>`SELECT value FROM cursors WHERE name = ${name}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
        Effect.orDie
      ),
    setCursor: (name, value) =>
      sql`INSERT INTO cursors (name, value) VALUES (${name}, ${value})
        ON CONFLICT (name) DO UPDATE SET value = excluded.value`.pipe(Effect.asVoid, Effect.orDie),
    // Atomic across hosts: exactly one insert of an id wins.
    markSeen: (namespace, id) =>
      sql<{ readonly id: string }>`INSERT INTO seen_ids (namespace, id) VALUES (${namespace}, ${id})
        ON CONFLICT DO NOTHING RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie),

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
  })
})

/** The store on an already open (and migrated) database. */
export const layerWithoutDb: Layer.Layer<StateStore, never, SqlClient.SqlClient> = Layer.effect(StateStore, make)

/** The store with its own pool on `options.url` (migrations applied first). */
export const layer = (options: PgDb.Options): Layer.Layer<StateStore, PgDb.StateDatabaseUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(PgDb.layer(options)))
