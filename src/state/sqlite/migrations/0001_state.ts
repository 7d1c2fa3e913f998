/**
 * Migration 1: the StateStore tables. Released migrations are never edited; change the schema with a new one.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE session_aliases (
    key TEXT PRIMARY KEY NOT NULL,
    alias TEXT NOT NULL
  )`
  // One row per (key, channel): the latest identity seen there. Activity order is the rowid order, because
  // recordIdentity replaces the row (a fresh rowid), so the highest rowid is the active channel.
  yield* sql`CREATE TABLE identities (
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    native_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (key, channel)
  )`
  yield* sql`CREATE INDEX identities_by_native_id ON identities (channel, native_id)`
  yield* sql`CREATE TABLE chat_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    message TEXT NOT NULL
  )`
  yield* sql`CREATE INDEX chat_history_by_session ON chat_history (session_id, id)`
  yield* sql`CREATE TABLE responses (
    id TEXT PRIMARY KEY NOT NULL,
    session_key TEXT,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`
  yield* sql`CREATE INDEX responses_by_created_at ON responses (created_at)`
  yield* sql`CREATE TABLE response_events (
    response_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (response_id, sequence)
  )`
  yield* sql`CREATE TABLE links (
    channel TEXT NOT NULL,
    native_id TEXT NOT NULL,
    isolation_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    claims TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (channel, native_id)
  )`
  yield* sql`CREATE INDEX links_by_isolation_key ON links (isolation_key)`
  yield* sql`CREATE TABLE cursors (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
  )`
  yield* sql`CREATE TABLE seen_ids (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
  ) WITHOUT ROWID`
  yield* sql`CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_table TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    at INTEGER NOT NULL
  )`
})
