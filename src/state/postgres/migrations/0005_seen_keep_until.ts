/**
 * Postgres migration 5: seen ids get a window, `keep_until`, as SQLite's migration 7 (existing rows: 24 hours from
 * now, the longest window any caller used). Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import * as Time from "../../../domain/Time.js"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const keepUntil = Time.plus(yield* Time.now, Duration.hours(24))
  yield* sql`ALTER TABLE seen_ids ADD COLUMN keep_until BIGINT NOT NULL DEFAULT 0`
  yield* sql`UPDATE seen_ids SET keep_until = ${keepUntil}`
  yield* sql`ALTER TABLE seen_ids ALTER COLUMN keep_until DROP DEFAULT`
  yield* sql`CREATE INDEX seen_ids_by_keep_until ON seen_ids (keep_until)`
})
