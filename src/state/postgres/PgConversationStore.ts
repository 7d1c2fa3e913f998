/**
 * `ConversationStore` on Postgres (`PgDb`, migration 0004); the statements are in `../ConversationSql.ts`. Hosts
 * sharing the database may change one conversation at once: each change locks its row for its transaction.
 */
import type { SqlClient } from "@effect/sql"
import { Layer } from "effect"
import * as ConversationSql from "../ConversationSql.js"
import { ConversationStore } from "../ConversationStore.js"
import * as PgDb from "./PgDb.js"

/** The store on an already open (and migrated) database. */
export const layerWithoutDb: Layer.Layer<ConversationStore, never, SqlClient.SqlClient> = Layer.effect(
  ConversationStore,
  ConversationSql.make("pg")
)

/** The store with its own pool on `options.url` (migrations applied first). */
export const layer = (options: PgDb.Options): Layer.Layer<ConversationStore, PgDb.StateDatabaseUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(PgDb.layer(options)))
