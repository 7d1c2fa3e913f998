/**
 * `ConversationStore` on the shared SQLite database (`StateDb`, migration 0006); the statements are in
 * `../ConversationSql.ts`. Conversation writes are rare next to a turn's, so they stay on the @effect/sql client.
 */
import type { SqlClient } from "@effect/sql"
import { Layer } from "effect"
import * as ConversationSql from "../ConversationSql.js"
import { ConversationStore } from "../ConversationStore.js"

/** The store on an already open (and migrated) database. */
export const layerWithoutDb: Layer.Layer<ConversationStore, never, SqlClient.SqlClient> = Layer.effect(
  ConversationStore,
  ConversationSql.make("sqlite")
)
