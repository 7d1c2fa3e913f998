/**
 * Migration 5: the durable task runner's tables (TaskStore), formerly created by the runner's own migrator
 * (table `agent_host_task_migrations`, migrations `1_create_tasks` and `2_shared_payloads`). A database that
 * runner already prepared keeps its tables and rows: everything here is `IF NOT EXISTS`, and the `shared` column
 * is added only where the runner's second migration never ran. The old migrations table is left as it is, so a
 * host of an earlier version can still open the database. Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS agent_host_tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    phase INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    payload TEXT NOT NULL,
    retry TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    shared TEXT
  )`
  const columns = yield* sql<{ readonly name: string }>`SELECT name FROM pragma_table_info('agent_host_tasks')`
  if (!columns.some((c) => c.name === "shared")) yield* sql`ALTER TABLE agent_host_tasks ADD COLUMN shared TEXT`
  // Only keys given by the scheduler are indexed: a task scheduled without one has its id as its key, found by the
  // primary key, and sparing the index a random insert per task is a sixth of the cost of storing one.
  yield* sql`DROP INDEX IF EXISTS agent_host_tasks_key`
  yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_by_key ON agent_host_tasks (idempotency_key)
    WHERE idempotency_key <> id`
  yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_status ON agent_host_tasks (status, updated_at)`
  // A reply pushed to many destinations is stored once; tasks name it by hash.
  yield* sql`CREATE TABLE IF NOT EXISTS agent_host_task_payloads (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`
  yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_shared ON agent_host_tasks (shared) WHERE shared IS NOT NULL`
  // Whatever deletes tasks (retention) deletes a payload with the last task naming it, so nothing else has to.
  yield* sql`CREATE TRIGGER IF NOT EXISTS agent_host_task_payloads_release AFTER DELETE ON agent_host_tasks
    WHEN old.shared IS NOT NULL AND NOT EXISTS (SELECT 1 FROM agent_host_tasks WHERE shared = old.shared)
    BEGIN DELETE FROM agent_host_task_payloads WHERE hash = old.shared; END`
})
