/**
 * Migration 7: every seen id (`StateStore.markSeen`) has a window, `keep_until` (EpochMillis), after which it is
 * pruned. Rows from before get the longest window any caller used at the time (24 hours, Telegram's redelivery)
 * from now, so nothing deduped before the upgrade is admitted again inside it. Safe to re-run, like migrations 5
 * and 6 (a database that already has the column keeps its windows). Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import * as Time from "../../../domain/Time.js"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const columns = yield* sql<{ readonly name: string }>`PRAGMA table_info(seen_ids)`
  if (!columns.some((c) => c.name === "keep_until")) {
    yield* sql`ALTER TABLE seen_ids ADD COLUMN keep_until INTEGER NOT NULL DEFAULT 0`
  }
  const keepUntil = Time.plus(yield* Time.now, Duration.hours(24))
  yield* sql`UPDATE seen_ids SET keep_until = ${keepUntil} WHERE keep_until = 0`
  yield* sql`CREATE INDEX IF NOT EXISTS seen_ids_by_keep_until ON seen_ids (keep_until)`
})
