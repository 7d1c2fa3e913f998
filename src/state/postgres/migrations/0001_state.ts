/**
 * Postgres migration 1: the StateStore tables, the same logical schema as SQLite's migrations 1, 3 and 4. Times
 * are `bigint` epoch milliseconds; JSON stays `text`, decoded by the store exactly as on SQLite, so a row that no
 * longer decodes is quarantined instead of failing a query. Where SQLite orders by rowid (activity order, a
 * replaced row moving last), rows carry `ord` from one sequence, renewed on every upsert. Released migrations are
 * never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE SEQUENCE agent_host_order`
  yield* sql`CREATE TABLE session_aliases (
    key TEXT PRIMARY KEY,
    alias TEXT NOT NULL
  )`
  yield* sql`CREATE TABLE identities (
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    native_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    ord BIGINT NOT NULL DEFAULT nextval('agent_host_order'),
    PRIMARY KEY (key, channel)
  )`
  yield* sql`CREATE INDEX identities_by_native_id ON identities (channel, native_id, ord)`
  yield* sql`CREATE INDEX identities_by_key ON identities (key, ord)`
  yield* sql`CREATE TABLE chat_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT NOT NULL,
    message TEXT NOT NULL
  )`
  yield* sql`CREATE INDEX chat_history_by_session ON chat_history (session_id, id)`
  // `status` is the wire status of `response`, written with it: SQLite indexes a JSON expression instead.
  yield* sql`CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    session_key TEXT,
    user_key TEXT,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
  )`
  yield* sql`CREATE INDEX responses_by_created_at ON responses (created_at)`
  yield* sql`CREATE INDEX responses_by_status ON responses (status, created_at)`
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
    linked_at BIGINT NOT NULL,
    ord BIGINT NOT NULL DEFAULT nextval('agent_host_order'),
    PRIMARY KEY (channel, native_id)
  )`
  yield* sql`CREATE INDEX links_by_isolation_key ON links (isolation_key)`
  yield* sql`CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
  )`
  yield* sql`CREATE TABLE seen_ids (
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
  )`
  yield* sql`CREATE TABLE quarantine (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_table TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    at BIGINT NOT NULL
  )`
})
