/**
 * The host's own migrations, in order. Other services sharing the database keep their own migrations table.
 */
import { Migrator } from "@effect/sql"
import m0001 from "./0001_state.js"
import m0002 from "./0002_checkpoints.js"
import m0003 from "./0003_epoch_millis.js"
import m0004 from "./0004_response_user_key.js"

export const table = "agent_host_migrations"

export const loader = Migrator.fromRecord({
  "0001_state": m0001,
  "0002_checkpoints": m0002,
  "0003_epoch_millis": m0003,
  "0004_response_user_key": m0004
})
