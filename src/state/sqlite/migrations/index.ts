/**
 * The state database's migrations, in order: every table the host keeps in it (state, checkpoints, tasks, conversations).
 */
import type { SqlError } from "@effect/sql"
import { Migrator, SqlClient } from "@effect/sql"
import { Effect } from "effect"
import m0001 from "./0001_state.js"
import m0002 from "./0002_checkpoints.js"
import m0003 from "./0003_epoch_millis.js"
import m0004 from "./0004_response_user_key.js"
import m0005 from "./0005_tasks.js"
import m0006 from "./0006_conversations.js"
import m0007 from "./0007_seen_keep_until.js"
import m0008 from "./0008_task_status_indexes.js"
import m0009 from "./0009_response_status_column.js"

export const table = "agent_host_migrations"

const migrations = {
  "0001_state": m0001,
  "0002_checkpoints": m0002,
  "0003_epoch_millis": m0003,
  "0004_response_user_key": m0004,
  "0005_tasks": m0005,
  "0006_conversations": m0006,
  "0007_seen_keep_until": m0007,
  "0008_task_status_indexes": m0008,
  "0009_response_status_column": m0009
}

export const loader = Migrator.fromRecord(migrations)

/** Each migration's id and name as the migrator records them (`0001_state` is 1, "state"). */
export const applied: ReadonlyArray<readonly [id: number, name: string]> = Object.keys(migrations).map((key) => {
  const separator = key.indexOf("_")
  return [Number.parseInt(key.slice(0, separator), 10), key.slice(separator + 1)] as const
})

/** The newest migration's id (the number its name starts with, as `Migrator.fromRecord` reads it). */
export const latestId = Math.max(...applied.map(([id]) => id))

const migrate = Migrator.make({})({ loader, table })

/**
 * Applies the migrations not yet applied to the `SqlClient`'s database (none when `StateDb` already did): a
 * service that needs its tables runs this on a client it was handed. When the database already has the newest
 * migration (every start but the first, and the task store's check after `StateDb`), two queries answer, instead
 * of the migrator's table check, loader and bookkeeping (~600 Effect steps, a few ms of a cold start); the
 * migrator would apply nothing then either, since it applies only ids above the newest recorded one.
 */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError.SqlError,
  SqlClient.SqlClient
> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // Not a query on the table itself: on a new database it would fail, and the client caches a failed prepare
  // for its statement cache's lifetime (the next check would fail too).
  const tables = yield* sql<
    { readonly name: string }
  >`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ${table}`
  if (tables.length === 0) return yield* migrate
  const rows = yield* sql<{ readonly id: number | null }>`SELECT max(migration_id) AS id FROM ${sql(table)}`
  return (rows[0]?.id ?? 0) >= latestId ? [] : yield* migrate
})
