/**
 * The durable task store on Postgres (`AGENT_HOST_STATE=postgres`): the same `TaskStore.Backend` as SQLite, behind
 * the same group commit, so the TaskRunner is unchanged. Tables: Postgres migration 3 (`PgDb` applies it).
 *
 * One runner per database: the runner keeps its queue in memory and resumes every unfinished row at start, so two
 * runners on one table would both run the same tasks. The store takes a session advisory lock on a connection it
 * holds for its lifetime and refuses to open (`TaskStoreError`, naming the cause) while another host holds it;
 * Postgres drops the lock when that host's connection dies, kill -9 included. Sharing one queue between hosts is
 * the cluster mode's job (docs/SCALING.md).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Option } from "effect"
import * as Time from "../domain/Time.js"
import * as DurablePush from "./DurablePush.js"
import * as TaskRunner from "./TaskRunner.js"
import type { Backend, Batch, Options, TaskRecord } from "./TaskStore.js"
import * as TaskStore from "./TaskStore.js"

/** The advisory lock key of the task queue (arbitrary, fixed: "agent-host tasks"). */
export const queueLockKey = 0x7461736b

type BigInt = string | number

interface Row {
  readonly id: string
  readonly name: string
  readonly idempotency_key: string
  readonly status: string
  readonly attempts: number
  readonly phase: number
  readonly next_attempt_at: BigInt
  readonly last_error: string | null
  readonly payload: string
  readonly retry: string | null
  readonly shared: string | null
  readonly created_at: BigInt
  readonly updated_at: BigInt
}

const statuses = new Set<string>(["pending", "running", "succeeded", "failed", "cancelled"])

const fromRow = (row: Row): TaskRecord => ({
  id: row.id,
  name: row.name,
  idempotencyKey: row.idempotency_key,
  status: statuses.has(row.status) ? row.status as TaskRecord["status"] : "failed",
  attempts: Number(row.attempts),
  phase: Number(row.phase),
  nextAttemptAt: Time.fromMillis(Number(row.next_attempt_at)),
  lastError: row.last_error,
  payload: row.payload,
  retry: row.retry,
  shared: row.shared,
  createdAt: Time.fromMillis(Number(row.created_at)),
  updatedAt: Time.fromMillis(Number(row.updated_at))
})

const toRow = (row: TaskRecord) => ({
  id: row.id,
  name: row.name,
  idempotency_key: row.idempotencyKey,
  status: row.status,
  attempts: row.attempts,
  phase: row.phase,
  next_attempt_at: row.nextAttemptAt,
  last_error: row.lastError,
  payload: row.payload,
  retry: row.retry,
  shared: row.shared,
  created_at: row.createdAt,
  updated_at: row.updatedAt
})

const describeCause = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "message" in cause ? String(cause.message) : String(cause)

const noDuplicates: ReadonlyMap<string, TaskRecord> = new Map()

/** The rows on the `SqlClient` (a migrated Postgres database); holds the queue lock for the scope. */
export const backend = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const failed = (what: string) => (e: unknown) =>
    new TaskStore.TaskStoreError({ message: `task store ${what} failed: ${describeCause(e)}` })

  const lock = yield* sql.reserve.pipe(Effect.mapError(failed("connect")))
  const [taken] = yield* lock.executeValues(`SELECT pg_try_advisory_lock(${queueLockKey})`, []).pipe(
    Effect.mapError(failed("lock"))
  )
  if (taken?.[0] === true) {
    // The lock belongs to the connection, which goes back to the pool: release it with the store.
    yield* Effect.addFinalizer(() => Effect.ignore(lock.executeRaw(`SELECT pg_advisory_unlock(${queueLockKey})`, [])))
  } else {
    return yield* new TaskStore.TaskStoreError({
      message: "another host runs the durable task queue on this database (it holds the queue's advisory lock): " +
        "AGENT_HOST_STATE=postgres runs one host per database. To run several hosts on one database, start every " +
        "one of them with AGENT_HOST_CLUSTER=postgres (docs/SCALING.md, cluster mode); otherwise stop the other " +
        "host, or give this one its own DATABASE_URL"
    })
  }

  const commit = ({ inserts, transitions, updates }: Batch) =>
    Effect.gen(function*() {
      let duplicates: Map<string, TaskRecord> | undefined
      // Keys inserted by this batch, for duplicates within it.
      const inserted = new Map<string, TaskRecord>()
      for (const { dedupe, row, shared } of inserts) {
        if (dedupe) {
          const earlier = inserted.get(row.idempotencyKey)
          if (earlier !== undefined) {
            ;(duplicates ??= new Map()).set(row.id, earlier)
            continue
          }
          // One runner per database (the lock), so this read is not racing another insert; the unique index
          // would refuse a second holder anyway.
          const holder = yield* sql<Row>`SELECT * FROM agent_host_tasks WHERE idempotency_key = ${row.idempotencyKey}
            ORDER BY created_at LIMIT 1`
          if (holder[0] !== undefined) {
            ;(duplicates ??= new Map()).set(row.id, fromRow(holder[0]))
            continue
          }
          inserted.set(row.idempotencyKey, row)
        }
        if (shared !== undefined) {
          yield* sql`INSERT INTO agent_host_task_payloads (hash, body, created_at)
            VALUES (${shared.hash}, ${shared.json}, ${row.createdAt}) ON CONFLICT (hash) DO NOTHING`
        }
        yield* sql`INSERT INTO agent_host_tasks ${sql.insert(toRow(row))}`
      }
      // Transitions are written row by row here, like snapshots (a multi-row statement is SQLite's saving).
      const rows = transitions === undefined ? updates : [...updates, ...transitions.flatMap((t) => t.rows)]
      for (const row of rows) {
        // Deleted meanwhile (retention, by hand): the snapshot is the task.
        yield* sql`INSERT INTO agent_host_tasks ${sql.insert(toRow(row))}
          ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
            phase = excluded.phase, next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
            retry = excluded.retry, updated_at = excluded.updated_at`
      }
      return duplicates ?? noDuplicates
    }).pipe(sql.withTransaction, Effect.mapError(failed("write")))

  const store: Backend = {
    commit,
    shared: (hash) =>
      sql<{ readonly body: string }>`SELECT body FROM agent_host_task_payloads WHERE hash = ${hash}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.body)),
        Effect.mapError(failed("read"))
      ),
    unfinished: sql<Row>`SELECT * FROM agent_host_tasks WHERE status IN ('pending', 'running')
      ORDER BY next_attempt_at`.pipe(Effect.map((rows) => rows.map(fromRow)), Effect.mapError(failed("load"))),
    get: (id) =>
      sql<Row>`SELECT * FROM agent_host_tasks WHERE id = ${id}`.pipe(
        Effect.map((rows) => rows[0] === undefined ? Option.none() : Option.some(fromRow(rows[0]))),
        Effect.mapError(failed("read"))
      ),
    list: (status, limit) =>
      (status === undefined ?
        sql<Row>`SELECT * FROM agent_host_tasks ORDER BY updated_at DESC LIMIT ${limit}` :
        sql<Row>`SELECT * FROM agent_host_tasks WHERE status = ${status} ORDER BY updated_at DESC LIMIT ${limit}`)
        .pipe(Effect.map((rows) => rows.map(fromRow)), Effect.mapError(failed("list"))),
    // A shared payload goes with the last task naming it (SQLite does this with a trigger).
    pruneFinished: (olderThan) =>
      Effect.gen(function*() {
        const removed = yield* sql<{ readonly shared: string | null }>`DELETE FROM agent_host_tasks
          WHERE status IN ('succeeded', 'failed', 'cancelled') AND updated_at < ${olderThan} RETURNING shared`
        const hashes = [...new Set(removed.flatMap((r) => r.shared === null ? [] : [r.shared]))]
        if (hashes.length > 0) {
          yield* sql`DELETE FROM agent_host_task_payloads p WHERE p.hash IN ${sql.in(hashes)}
            AND NOT EXISTS (SELECT 1 FROM agent_host_tasks t WHERE t.shared = p.hash)`
        }
        return removed.length
      }).pipe(sql.withTransaction, Effect.mapError(failed("prune")))
  }
  return store
})

/** Durable: rows in the Postgres state database (`PgDb.layer` provides the `SqlClient`). */
export const layer = (
  options: Options = {}
): Layer.Layer<TaskStore.TaskStore, TaskStore.TaskStoreError, SqlClient.SqlClient> =>
  Layer.scoped(TaskStore.TaskStore, Effect.flatMap(backend, (rows) => TaskStore.make(rows, options)))

/** The TaskRunner on the Postgres task store (options from AGENT_HOST_TASK_*). */
export const layerRunner = (
  options: TaskRunner.Options = {}
): Layer.Layer<TaskRunner.TaskRunner, TaskRunner.TaskRunnerError, SqlClient.SqlClient> =>
  TaskRunner.layer(options).pipe(
    Layer.provide(
      layer(options).pipe(
        Layer.mapError((e) => new TaskRunner.TaskRunnerError({ message: `cannot open the task store: ${e.message}` }))
      )
    )
  )

/** Durable pushes on the Postgres state database in context: what `DurablePush.layerSqlite` is for SQLite. */
export const layerPush = DurablePush.layer.pipe(
  Layer.provideMerge(
    Layer.unwrapEffect(
      Effect.map(Effect.orElseSucceed(TaskRunner.optionsConfig, () => ({})), layerRunner)
    )
  )
)
