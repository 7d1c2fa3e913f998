/**
 * Postgres migration 2: workflow checkpoints (CheckpointStore), as SQLite's migration 2; `ord` is save order.
 * Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE checkpoints (
    isolation_key TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    data BYTEA NOT NULL,
    ord BIGINT NOT NULL DEFAULT nextval('agent_host_order'),
    PRIMARY KEY (isolation_key, workflow_name, checkpoint_id)
  )`
  yield* sql`CREATE INDEX checkpoints_by_order ON checkpoints (isolation_key, workflow_name, ord)`
})
