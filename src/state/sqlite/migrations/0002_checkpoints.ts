/**
 * Migration 2: workflow checkpoints (CheckpointStore). Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // Saving an existing id replaces the row (a fresh rowid), so the highest rowid is the latest checkpoint.
  yield* sql`CREATE TABLE checkpoints (
    isolation_key TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (isolation_key, workflow_name, checkpoint_id)
  )`
})
