/**
 * `CheckpointStore` on the shared SQLite database (`checkpoints` table, migration 2): `SqlCheckpointStore` in
 * SQLite's dialect.
 */
import type { SqlClient } from "@effect/sql"
import { Layer } from "effect"
import { CheckpointStore } from "../CheckpointStore.js"
import * as SqlCheckpointStore from "../SqlCheckpointStore.js"
import * as StateDb from "./StateDb.js"

export const make = SqlCheckpointStore.make({ activityOrder: "rowid" })

/** The store on an already open state database (migrations applied by `StateDb`). */
export const layerWithoutDb: Layer.Layer<CheckpointStore, never, SqlClient.SqlClient> = Layer.effect(
  CheckpointStore,
  make
)

/** The store with its own state database in `directory`. */
export const layer = (
  options: StateDb.Options
): Layer.Layer<CheckpointStore, StateDb.StateDirLocked | StateDb.StateDirUnavailable> =>
  layerWithoutDb.pipe(Layer.provide(StateDb.layer(options)))
