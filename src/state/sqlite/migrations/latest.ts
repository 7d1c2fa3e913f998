/**
 * The schema every migration together builds, as SQLite records it (`sqlite_master`, in creation order): a new
 * database gets it in one transaction, with every migration recorded as applied, instead of running them one by
 * one through the migrator (~12 ms of a first start, against ~1 ms). test/StateSchema.test.ts checks that it is
 * exactly what the migrations build; a new migration is added to it (the test prints what to paste).
 */
import * as NativeSqlite from "../NativeSqlite.js"
import { applied, table } from "./index.js"

export const statements: ReadonlyArray<string> = [
  `CREATE TABLE "agent_host_migrations" (
  migration_id integer PRIMARY KEY NOT NULL,
  created_at datetime NOT NULL DEFAULT current_timestamp,
  name VARCHAR(255) NOT NULL
)`,
  `CREATE TABLE session_aliases (
    key TEXT PRIMARY KEY NOT NULL,
    alias TEXT NOT NULL
  )`,
  `CREATE TABLE identities (
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    native_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (key, channel)
  )`,
  `CREATE INDEX identities_by_native_id ON identities (channel, native_id)`,
  `CREATE TABLE chat_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    message TEXT NOT NULL
  )`,
  `CREATE INDEX chat_history_by_session ON chat_history (session_id, id)`,
  `CREATE TABLE responses (
    id TEXT PRIMARY KEY NOT NULL,
    session_key TEXT,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL,
    created_at INTEGER NOT NULL
  , user_key TEXT, status TEXT NOT NULL DEFAULT '')`,
  `CREATE INDEX responses_by_created_at ON responses (created_at)`,
  `CREATE TABLE response_events (
    response_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (response_id, sequence)
  )`,
  `CREATE TABLE links (
    channel TEXT NOT NULL,
    native_id TEXT NOT NULL,
    isolation_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    claims TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (channel, native_id)
  )`,
  `CREATE INDEX links_by_isolation_key ON links (isolation_key)`,
  `CREATE TABLE cursors (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
  )`,
  `CREATE TABLE seen_ids (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL, keep_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, id)
  ) WITHOUT ROWID`,
  `CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_table TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    at INTEGER NOT NULL
  )`,
  `CREATE TABLE checkpoints (
    isolation_key TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (isolation_key, workflow_name, checkpoint_id)
  )`,
  `CREATE TABLE agent_host_tasks (
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
  )`,
  `CREATE INDEX agent_host_tasks_by_key ON agent_host_tasks (idempotency_key)
    WHERE idempotency_key <> id`,
  `CREATE TABLE agent_host_task_payloads (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`,
  `CREATE INDEX agent_host_tasks_shared ON agent_host_tasks (shared) WHERE shared IS NOT NULL`,
  `CREATE TRIGGER agent_host_task_payloads_release AFTER DELETE ON agent_host_tasks
    WHEN old.shared IS NOT NULL AND NOT EXISTS (SELECT 1 FROM agent_host_tasks WHERE shared = old.shared)
    BEGIN DELETE FROM agent_host_task_payloads WHERE hash = old.shared; END`,
  `CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    user_key TEXT,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    item_count INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    session_key TEXT,
    session_revision INTEGER
  )`,
  `CREATE INDEX conversations_by_updated ON conversations (updated_at)`,
  `CREATE TABLE conversation_items (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
  ) WITHOUT ROWID`,
  `CREATE INDEX conversation_items_by_id ON conversation_items (conversation_id, item_id)`,
  `CREATE INDEX seen_ids_by_keep_until ON seen_ids (keep_until)`,
  `CREATE INDEX agent_host_tasks_succeeded ON agent_host_tasks (updated_at)
    WHERE status = 'succeeded'`,
  `CREATE INDEX agent_host_tasks_open ON agent_host_tasks (status, updated_at)
    WHERE status <> 'succeeded'`,
  `CREATE INDEX responses_by_status ON responses (status, created_at)`
]

/**
 * Creates the tables in the new database `filename` and records every migration as applied, in one transaction;
 * true when it did. A database that has any table already (a leftover WAL can give one to a new file) is left as
 * it is, for the migrator: false.
 */
export const create = (filename: string): boolean => {
  const db = NativeSqlite.open(filename)
  try {
    db.exec("BEGIN IMMEDIATE")
    try {
      const existing = db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { readonly n: number }
      if (existing.n !== 0) {
        db.exec("ROLLBACK")
        return false
      }
      for (const statement of statements) db.exec(statement)
      const record = db.prepare(`INSERT INTO "${table}" (migration_id, name) VALUES (?, ?)`)
      for (const [id, name] of applied) record.run(id, name)
      db.exec("COMMIT")
      return true
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK")
      throw error
    }
  } finally {
    db.close()
  }
}
