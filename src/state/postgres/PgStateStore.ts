/**
 * `StateStore` on Postgres (`PgDb`): the same contract as the SQLite store (test/utils/StateStoreContract.ts), with
 * the reads, deletes and quarantine of rows that no longer decode shared with it (`StateRows`). Every write is one
 * statement (or one transaction) on the pool and completes once committed; `appendHistory` with `wait: false` waits too, since
 * with a pool only waiting keeps it ordered before the turn's later writes. Several hosts may share the tables:
 * each write is atomic, and ordering within a session is the session owner's business (one writer per session).
 *
 * SQL failures are infrastructure failures the caller cannot act on: they become defects here.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import * as Time from "../../domain/Time.js"
import * as StateRows from "../StateRows.js"
import type { SeenPruneSettings } from "../StateStore.js"
import { defaultSeenPrune, pruneSeenPeriodically, StateStore } from "../StateStore.js"
import * as PgDb from "./PgDb.js"

const { encodeIdentity, encodeMessage, statusOf, toJson } = StateRows

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const { decodeResponses, reads, responseColumns } = StateRows.make(sql, { activityOrder: "ord" })

  return StateStore.of({
    ...reads,
    setAlias: (key, alias) =>
      sql`INSERT INTO session_aliases (key, alias) VALUES (${key}, ${alias})
        ON CONFLICT (key) DO UPDATE SET alias = excluded.alias`.pipe(Effect.asVoid, Effect.orDie),
    // A fresh `ord` on every sighting: the highest is the active channel.
    recordIdentity: (key, identity, at) =>
      sql`INSERT INTO identities (key, channel, native_id, identity, seen_at)
        VALUES (${key}, ${identity.channel}, ${identity.nativeId}, ${encodeIdentity(identity)}, ${at})
        ON CONFLICT (key, channel) DO UPDATE SET native_id = excluded.native_id, identity = excluded.identity,
          seen_at = excluded.seen_at, ord = excluded.ord`.pipe(Effect.asVoid, Effect.orDie),
    appendHistory: (sessionId, messages) =>
      messages.length === 0 ?
        Effect.void :
        sql`INSERT INTO chat_history ${
          sql.insert(messages.map((message) => ({ session_id: sessionId, message: encodeMessage(message) })))
        }`.pipe(Effect.asVoid, Effect.orDie),
    putResponse: (response) =>
      sql`INSERT INTO responses (id, session_key, user_key, response, input_items, status, created_at)
        VALUES (${response.id}, ${response.sessionKey ?? null}, ${response.userKey ?? null},
          ${response.responseJson ?? toJson(response.response)}, ${toJson(response.inputItems)},
          ${statusOf(response.response)},
          ${response.createdAt})
        ON CONFLICT (id) DO UPDATE SET session_key = excluded.session_key, user_key = excluded.user_key,
          response = excluded.response, input_items = excluded.input_items, status = excluded.status,
          created_at = excluded.created_at`.pipe(Effect.asVoid, Effect.orDie),
    appendResponseEvents: (id, events) => {
      if (events.length === 0) return Effect.void
      // One statement may not name a row twice in ON CONFLICT DO UPDATE: the last event of a sequence wins.
      const bySequence = new Map<number, unknown>()
      for (const event of events) bySequence.set(event.sequence, event.event)
      const rows = [...bySequence].map(([sequence, event]) => ({ response_id: id, sequence, event: toJson(event) }))
      return sql`INSERT INTO response_events ${sql.insert(rows)}
        ON CONFLICT (response_id, sequence) DO UPDATE SET event = excluded.event`.pipe(Effect.asVoid, Effect.orDie)
    },
    responsesWithStatus: (statuses) =>
      statuses.length === 0 ?
        Effect.succeed([]) :
        sql<StateRows.ResponseRow>`SELECT ${responseColumns} FROM responses WHERE status IN ${sql.in(statuses)}
          ORDER BY created_at, id`.pipe(Effect.orDie, Effect.flatMap(decodeResponses)),
    putLink: (link) =>
      sql`INSERT INTO links (channel, native_id, isolation_key, subject, claims, linked_at)
          VALUES (${link.channel}, ${link.nativeId}, ${link.isolationKey}, ${link.subject}, ${toJson(link.claims)},
                  ${link.linkedAt})
          ON CONFLICT (channel, native_id) DO UPDATE SET isolation_key = excluded.isolation_key,
            subject = excluded.subject, claims = excluded.claims, linked_at = excluded.linked_at,
            ord = excluded.ord`.pipe(Effect.asVoid, Effect.orDie),
    setCursor: (name, value) =>
      sql`INSERT INTO cursors (name, value) VALUES (${name}, ${value})
        ON CONFLICT (name) DO UPDATE SET value = excluded.value`.pipe(Effect.asVoid, Effect.orDie),
    // Atomic across hosts: exactly one insert of an id wins. A row whose window has passed (not yet pruned) is
    // taken over: the id counts as new.
    markSeen: (namespace, id, keepFor) =>
      Effect.flatMap(Time.now, (now) =>
        sql<{ readonly id: string }>`INSERT INTO seen_ids (namespace, id, keep_until)
          VALUES (${namespace}, ${id}, ${Time.plus(now, keepFor)})
          ON CONFLICT (namespace, id) DO UPDATE SET keep_until = excluded.keep_until
            WHERE seen_ids.keep_until < ${now}
          RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie))
  })
})

/** The store on an already open (and migrated) database, pruning expired seen ids periodically. */
export const layerWithoutDbWith = (
  seenPrune: SeenPruneSettings = defaultSeenPrune
): Layer.Layer<StateStore, never, SqlClient.SqlClient> =>
  Layer.scoped(StateStore, Effect.tap(make, (store) => pruneSeenPeriodically(store, seenPrune)))

/** `layerWithoutDbWith` with the default seen-id pruning. */
export const layerWithoutDb: Layer.Layer<StateStore, never, SqlClient.SqlClient> = layerWithoutDbWith()

/** The store with its own pool on `options.url` (migrations applied first). */
export const layer = (options: PgDb.Options): Layer.Layer<StateStore, PgDb.StateDatabaseUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(PgDb.layer(options)))
