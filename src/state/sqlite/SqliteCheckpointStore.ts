/**
 * `CheckpointStore` on the shared SQLite database (`checkpoints` table, migration 2). Keys are plain column
 * values here, so every isolation key is accepted.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"
import * as Time from "../../domain/Time.js"
import type { Checkpoint, CheckpointInfo } from "../CheckpointStore.js"
import { CheckpointStore } from "../CheckpointStore.js"
import * as StateDb from "./StateDb.js"

interface Row {
  readonly id: string
  readonly createdAt: number
  readonly data: Uint8Array
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const toCheckpoint = (isolationKey: string, workflowName: string) => (row: Row): Checkpoint => ({
    id: row.id,
    isolationKey,
    workflowName,
    createdAt: Time.fromMillis(row.createdAt),
    data: new Uint8Array(row.data)
  })

  return CheckpointStore.of({
    save: Effect.fn("CheckpointStore.save")(function*(isolationKey, workflowName, id, data) {
      const createdAt = yield* Time.now
      // REPLACE gives the row a fresh rowid: rowid order is save order
      yield* sql`INSERT OR REPLACE INTO checkpoints (isolation_key, workflow_name, checkpoint_id, created_at, data)
        VALUES (${isolationKey}, ${workflowName}, ${id}, ${createdAt},
                ${Buffer.from(data.buffer, data.byteOffset, data.byteLength)})`.pipe(Effect.orDie)
      return { id, isolationKey, workflowName, createdAt, data }
    }),
    load: (isolationKey, workflowName, id) =>
      sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt", data FROM checkpoints
        WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName} AND checkpoint_id = ${id}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toCheckpoint(isolationKey, workflowName))),
        Effect.orDie
      ),
    latest: (isolationKey, workflowName) =>
      sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt", data FROM checkpoints
        WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName} ORDER BY rowid DESC LIMIT 1`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toCheckpoint(isolationKey, workflowName))),
        Effect.orDie
      ),
    list: (isolationKey, workflowName) =>
      sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt" FROM checkpoints
        WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName} ORDER BY rowid DESC`.pipe(
        Effect.map((rows) =>
          rows.map((row): CheckpointInfo => ({ id: row.id, createdAt: Time.fromMillis(row.createdAt) }))
        ),
        Effect.orDie
      )
  })
})

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
