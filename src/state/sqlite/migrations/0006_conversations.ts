/**
 * Migration 6: OpenAI Conversations (`ConversationStore`): a conversation row (metadata, owner, revision, the
 * session that mirrors its items) and its items in order (`seq`, from the row's `next_seq`). `IF NOT EXISTS`, like
 * migration 5, so re-running it on a database that has the tables is harmless. Released migrations are never
 * edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS conversations (
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
  )`
  yield* sql`CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations (updated_at)`
  yield* sql`CREATE TABLE IF NOT EXISTS conversation_items (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
  ) WITHOUT ROWID`
  yield* sql`CREATE INDEX IF NOT EXISTS conversation_items_by_id ON conversation_items (conversation_id, item_id)`
})
