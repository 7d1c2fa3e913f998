/**
 * Postgres migration 4: OpenAI Conversations (`ConversationStore`), as SQLite's migration 6. Released migrations
 * are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    user_key TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision INTEGER NOT NULL,
    item_count INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    session_key TEXT,
    session_revision INTEGER
  )`
  yield* sql`CREATE INDEX conversations_by_updated ON conversations (updated_at)`
  yield* sql`CREATE TABLE conversation_items (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
  )`
  yield* sql`CREATE INDEX conversation_items_by_id ON conversation_items (conversation_id, item_id)`
})
