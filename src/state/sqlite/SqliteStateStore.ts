/**
 * `StateStore` on the shared SQLite database (`StateDb`). Reads, deletes and the quarantine of rows that no longer
 * decode are shared with the Postgres store (`StateRows`); the writes are SQLite's own.
 *
 * Writes on a turn's path (history, identities, responses and their events, aliases, cursors, seen ids) go through
 * `StateWriter`, group-committed with other turns' writes; each completes once committed, so a read after it (on
 * either connection) sees it. Rare writes (deletes, quarantine, links) stay on the @effect/sql client. The reads a
 * turn may make (its session's alias and history, the key an identity was seen under) run on the writer's
 * connection at once (`StateWriter.read`), without the client's ~100 Effect steps a statement.
 *
 * SQL failures are infrastructure failures the caller cannot act on: they become defects here.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer, Option } from "effect"
import type { Message } from "../../domain/Message.js"
import * as Time from "../../domain/Time.js"
import * as StateRows from "../StateRows.js"
import type { SeenPruneSettings } from "../StateStore.js"
import { defaultSeenPrune, pruneSeenPeriodically, StateStore } from "../StateStore.js"
import * as StateDb from "./StateDb.js"
import type { Step } from "./StateWriter.js"
import { StateWriter } from "./StateWriter.js"

const { decodeMessage, encodeIdentity, encodeMessage, statusOf, toJson } = StateRows

const insertHistory = "INSERT INTO chat_history (session_id, message) VALUES (?, ?)"
// REPLACE (not UPSERT) so the row gets a fresh rowid: rowid order is activity order.
const replaceIdentity =
  "INSERT OR REPLACE INTO identities (key, channel, native_id, identity, seen_at) VALUES (?, ?, ?, ?, ?)"
const replaceResponse = "INSERT OR REPLACE INTO responses (id, session_key, user_key, response, input_items, " +
  "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
const replaceEvent = "INSERT OR REPLACE INTO response_events (response_id, sequence, event) VALUES (?, ?, ?)"
const upsertAlias = "INSERT INTO session_aliases (key, alias) VALUES (?, ?) " +
  "ON CONFLICT (key) DO UPDATE SET alias = excluded.alias"
const upsertCursor = "INSERT INTO cursors (name, value) VALUES (?, ?) " +
  "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
const selectAlias = "SELECT alias FROM session_aliases WHERE key = ?"
const selectKeyByIdentity = "SELECT key FROM identities WHERE channel = ? AND native_id = ? ORDER BY rowid DESC LIMIT 1"
const selectHistory = "SELECT message FROM chat_history WHERE session_id = ? ORDER BY id"
// The most recent `limit` rows (the index is (session_id, id)), newest first.
const selectRecentHistory = "SELECT message FROM chat_history WHERE session_id = ? ORDER BY id DESC LIMIT ?"
// A row whose window has passed (not yet pruned) is taken over: the id counts as new.
const insertSeen = "INSERT INTO seen_ids (namespace, id, keep_until) VALUES (?, ?, ?) " +
  "ON CONFLICT (namespace, id) DO UPDATE SET keep_until = excluded.keep_until WHERE seen_ids.keep_until < ?"

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const writer = yield* StateWriter
  const { decodeResponses, reads, responseColumns } = StateRows.make(sql, { activityOrder: "rowid" })

  return StateStore.of({
    ...reads,
    getAlias: (key) =>
      Effect.map(
        writer.read((statement) => statement(selectAlias).get(key) as { readonly alias: string } | undefined),
        (row) => Option.fromNullable(row?.alias)
      ),
    findKeyByIdentity: (channel, nativeId) =>
      Effect.map(
        writer.read((statement) =>
          statement(selectKeyByIdentity).get(channel, nativeId) as { readonly key: string } | undefined
        ),
        (row) => Option.fromNullable(row?.key)
      ),
    loadHistory: (sessionId, limit) =>
      Effect.flatMap(
        writer.read((statement) =>
          limit === undefined ?
            statement(selectHistory).all(sessionId) as Array<{ readonly message: string }> :
            (statement(selectRecentHistory).all(sessionId, limit) as Array<{ readonly message: string }>).reverse()
        ),
        (rows) => {
          const messages: Array<Message> = []
          for (const row of rows) {
            const decoded = decodeMessage(row.message)
            // A row that no longer decodes: the shared read quarantines it (and reads the rest again).
            if (Either.isLeft(decoded)) return reads.loadHistory(sessionId, limit)
            messages.push(decoded.right)
          }
          return Effect.succeed(messages)
        }
      ),
    setAlias: (key, alias) => writer.write((statement) => void statement(upsertAlias).run(key, alias)),
    recordIdentity: (key, identity, at) =>
      writer.write((statement) =>
        void statement(replaceIdentity).run(key, identity.channel, identity.nativeId, encodeIdentity(identity), at)
      ),
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
          response.responseJson ?? toJson(response.response),
          toJson(response.inputItems),
          statusOf(response.response),
          response.createdAt
        )
      ),
    appendResponseEvents: (id, events) =>
      events.length === 0 ?
        Effect.void :
        writer.write((statement) => {
          const insert = statement(replaceEvent)
          for (const event of events) insert.run(id, event.sequence, toJson(event.event))
        }),
    responsesWithStatus: (statuses) =>
      statuses.length === 0 ?
        Effect.succeed([]) :
        // The status column is indexed (responses_by_status, migration 0009), so this is no table scan.
        sql<StateRows.ResponseRow>`SELECT ${responseColumns} FROM responses WHERE status IN ${sql.in(statuses)}
          ORDER BY created_at, id`.pipe(Effect.orDie, Effect.flatMap(decodeResponses)),
    putLink: (link) =>
      sql`INSERT OR REPLACE INTO links (channel, native_id, isolation_key, subject, claims, linked_at)
          VALUES (${link.channel}, ${link.nativeId}, ${link.isolationKey}, ${link.subject}, ${toJson(link.claims)},
                  ${link.linkedAt})`.pipe(Effect.asVoid, Effect.orDie),
    setCursor: (name, value) => writer.write((statement) => void statement(upsertCursor).run(name, value)),
    markSeen: (namespace, id, keepFor) =>
      Effect.flatMap(
        Time.now,
        (now) =>
          writer.write((statement) =>
            statement(insertSeen).run(namespace, id, Time.plus(now, keepFor), now).changes > 0
          )
      )
  })
})

/** The store on an already open database (shared with other services), pruning expired seen ids periodically. */
export const layerWithoutDbWith = (
  seenPrune: SeenPruneSettings = defaultSeenPrune
): Layer.Layer<StateStore, never, SqlClient.SqlClient | StateWriter> =>
  Layer.scoped(StateStore, Effect.tap(make, (store) => pruneSeenPeriodically(store, seenPrune)))

/** `layerWithoutDbWith` with the default seen-id pruning. */
export const layerWithoutDb: Layer.Layer<StateStore, never, SqlClient.SqlClient | StateWriter> = layerWithoutDbWith()

/** The store with its own database in `directory` (lock, WAL, migrations). */
export const layer = (
  options: StateDb.Options
): Layer.Layer<StateStore, StateDb.StateDirLocked | StateDb.StateDirUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(StateDb.layer(options)))
