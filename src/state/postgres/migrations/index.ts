/**
 * The Postgres state database's migrations, in order (the same logical schema as `../../sqlite/migrations`).
 */
import { Migrator } from "@effect/sql"
import * as MigrationLock from "../MigrationLock.js"
import m0001 from "./0001_state.js"
import m0002 from "./0002_checkpoints.js"
import m0003 from "./0003_tasks.js"
import m0004 from "./0004_conversations.js"
import m0005 from "./0005_seen_keep_until.js"

export const table = "agent_host_migrations"

export const loader = Migrator.fromRecord({
  "0001_state": m0001,
  "0002_checkpoints": m0002,
  "0003_tasks": m0003,
  "0004_conversations": m0004,
  "0005_seen_keep_until": m0005
})

const migrate = Migrator.make({})({ loader, table })

/**
 * Applies the migrations not yet applied. Several hosts starting at once on a new database take turns
 * (`MigrationLock`): the migrator's own `LOCK TABLE ... NOWAIT` comes after its check-then-create of the migrations
 * table, and a host finding that lock taken would go on before the migrations are in.
 */
export const run = MigrationLock.around(migrate)
