/**
 * The state database's migrations, in order: every table the host keeps in it (state, checkpoints, tasks, conversations).
 */
import { Migrator } from "@effect/sql"
import m0001 from "./0001_state.js"
import m0002 from "./0002_checkpoints.js"
import m0003 from "./0003_epoch_millis.js"
import m0004 from "./0004_response_user_key.js"
import m0005 from "./0005_tasks.js"
import m0006 from "./0006_conversations.js"
import m0007 from "./0007_seen_keep_until.js"
import m0008 from "./0008_task_status_indexes.js"

export const table = "agent_host_migrations"

export const loader = Migrator.fromRecord({
  "0001_state": m0001,
  "0002_checkpoints": m0002,
  "0003_epoch_millis": m0003,
  "0004_response_user_key": m0004,
  "0005_tasks": m0005,
  "0006_conversations": m0006,
  "0007_seen_keep_until": m0007,
  "0008_task_status_indexes": m0008
})

/**
 * Applies the migrations not yet applied to the `SqlClient`'s database (none when `StateDb` already did): a
 * service that needs its tables runs this on a client it was handed.
 */
export const run = Migrator.make({})({ loader, table })
