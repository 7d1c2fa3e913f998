/**
 * `CheckpointStore` on the host's SQL database (`checkpoints` table: SQLite and Postgres migration 2), the same
 * code for both dialects but the upsert. Keys are plain column values here, so every isolation key is accepted.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import * as Time from "../domain/Time.js"
import type { Checkpoint, CheckpointInfo } from "./CheckpointStore.js"
import { CheckpointStore } from "./CheckpointStore.js"
import type { Dialect, Millis } from "./StateRows.js"

interface Row {
  readonly id: string
  readonly createdAt: Millis
  readonly data: Uint8Array
}

const info = (row: Row): CheckpointInfo => ({ id: row.id, createdAt: Time.fromMillis(Number(row.createdAt)) })

export const make = (dialect: Dialect) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const order = sql.literal(dialect.activityOrder)

    const toCheckpoint = (isolationKey: string, workflowName: string) => (row: Row): Checkpoint => ({
      ...info(row),
      isolationKey,
      workflowName,
      data: new Uint8Array(row.data)
    })
    const one = (isolationKey: string, workflowName: string) => (rows: ReadonlyArray<Row>) =>
      Option.map(Option.fromNullable(rows[0]), toCheckpoint(isolationKey, workflowName))

    // Saving an id again renews its order (SQLite: REPLACE gives a fresh rowid; Postgres: a fresh `ord`), so the
    // highest is the latest.
    const upsert = (isolationKey: string, workflowName: string, id: string, createdAt: number, data: Buffer) =>
      dialect.activityOrder === "rowid" ?
        sql`INSERT OR REPLACE INTO checkpoints (isolation_key, workflow_name, checkpoint_id, created_at, data)
          VALUES (${isolationKey}, ${workflowName}, ${id}, ${createdAt}, ${data})` :
        sql`INSERT INTO checkpoints (isolation_key, workflow_name, checkpoint_id, created_at, data)
          VALUES (${isolationKey}, ${workflowName}, ${id}, ${createdAt}, ${data})
          ON CONFLICT (isolation_key, workflow_name, checkpoint_id) DO UPDATE SET created_at = excluded.created_at,
            data = excluded.data, ord = excluded.ord`

    return CheckpointStore.of({
      save: Effect.fn("CheckpointStore.save")(function*(isolationKey, workflowName, id, data) {
        const createdAt = yield* Time.now
        yield* upsert(
          isolationKey,
          workflowName,
          id,
          createdAt,
          Buffer.from(data.buffer, data.byteOffset, data.byteLength)
        ).pipe(Effect.orDie)
        return { id, isolationKey, workflowName, createdAt, data }
      }),
      load: (isolationKey, workflowName, id) =>
        sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt", data FROM checkpoints
          WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName} AND checkpoint_id = ${id}`.pipe(
          Effect.map(one(isolationKey, workflowName)),
          Effect.orDie
        ),
      latest: (isolationKey, workflowName) =>
        sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt", data FROM checkpoints
          WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName}
          ORDER BY ${order} DESC LIMIT 1`.pipe(Effect.map(one(isolationKey, workflowName)), Effect.orDie),
      list: (isolationKey, workflowName) =>
        sql<Row>`SELECT checkpoint_id AS id, created_at AS "createdAt" FROM checkpoints
          WHERE isolation_key = ${isolationKey} AND workflow_name = ${workflowName} ORDER BY ${order} DESC`.pipe(
          Effect.map((rows) => rows.map(info)),
          Effect.orDie
        )
    })
  })
