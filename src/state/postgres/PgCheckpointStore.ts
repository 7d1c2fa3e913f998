/**
 * `CheckpointStore` on the Postgres state database (`checkpoints` table, Postgres migration 2):
 * `SqlCheckpointStore` in Postgres's dialect.
 */
import type { SqlClient } from "@effect/sql"
import { Layer } from "effect"
import { CheckpointStore } from "../CheckpointStore.js"
import * as SqlCheckpointStore from "../SqlCheckpointStore.js"
import * as PgDb from "./PgDb.js"

export const make = SqlCheckpointStore.make({ activityOrder: "ord" })

/** The store on an already open (and migrated) database. */
export const layerWithoutDb: Layer.Layer<CheckpointStore, never, SqlClient.SqlClient> = Layer.effect(
  CheckpointStore,
  make
)

/** The store with its own pool on `options.url` (migrations applied first). */
export const layer = (options: PgDb.Options): Layer.Layer<CheckpointStore, PgDb.StateDatabaseUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(PgDb.layer(options)))
