/**
 * Postgres migration 3: the durable task store's tables (TaskStore), as SQLite's migration 5. The SQLite trigger
 * that deletes a shared payload with the last task naming it is a statement here, in the store's prune. Released
 * migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE agent_host_tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    phase INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    payload TEXT NOT NULL,
    retry TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    shared TEXT
  )`
  // Unique, unlike SQLite's: with several connections, the index (not a read before the write) decides which
  // schedule of a key wins.
  yield* sql`CREATE UNIQUE INDEX agent_host_tasks_by_key ON agent_host_tasks (idempotency_key)
    WHERE idempotency_key <> id`
  yield* sql`CREATE INDEX agent_host_tasks_status ON agent_host_tasks (status, updated_at)`
  yield* sql`CREATE INDEX agent_host_tasks_unfinished ON agent_host_tasks (next_attempt_at)
    WHERE status IN ('pending', 'running')`
  yield* sql`CREATE TABLE agent_host_task_payloads (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
  )`
  yield* sql`CREATE INDEX agent_host_tasks_shared ON agent_host_tasks (shared) WHERE shared IS NOT NULL`
})
