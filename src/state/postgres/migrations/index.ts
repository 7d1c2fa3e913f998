/**
 * The Postgres state database's migrations, in order (the same logical schema as `../../sqlite/migrations`).
 */
import { Migrator } from "@effect/sql"
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

/**
 * Applies the migrations not yet applied. Several hosts starting at once are safe: the migrator locks its table
 * (`LOCK TABLE ... ACCESS EXCLUSIVE`) for the run.
 */
export const run = Migrator.make({})({ loader, table })
