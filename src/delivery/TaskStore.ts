/**
 * Where the durable task runner keeps its tasks: one row per task (its status, attempts, phase cursor and
 * next-attempt time) and the shared payloads tasks name by hash.
 *
 * Writes go through a group commit: every row snapshot handed over while the previous commit ran is written in
 * one transaction, whichever tasks they belong to, so a commit costs the same for one task or a thousand.
 * `insert` and `update` wait for the commit that holds their row; `updateLater` does not.
 *
 * `layerMemory` keeps the rows in process; `layerSqlite` keeps them in the state database (tables created by the
 * state migrations, `src/state/sqlite/migrations`), so pending tasks resume after a crash. A scheduled task is
 * committed before `insert` returns, with the batch it joined; nothing is acknowledged before its commit.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Exit, Layer, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import * as Time from "../domain/Time.js"
import * as Migrations from "../state/sqlite/migrations/index.js"
import * as StateWriter from "../state/sqlite/StateWriter.js"

export const TaskStatus = Schema.Literal("pending", "running", "succeeded", "failed", "cancelled")
export type TaskStatus = typeof TaskStatus.Type

export const isTerminal = (status: TaskStatus): boolean =>
  status === "succeeded" || status === "failed" || status === "cancelled"

/** A task as stored. */
export interface TaskRecord {
  readonly id: string
  readonly name: string
  readonly idempotencyKey: string
  readonly status: TaskStatus
  readonly attempts: number
  readonly phase: number
  readonly nextAttemptAt: Time.EpochMillis
  readonly lastError: string | null
  /** The Schema-encoded payload, as JSON. */
  readonly payload: string
  /** The per-task retry policy, as JSON. */
  readonly retry: string | null
  /** The hash of the task's shared payload, if it has one. */
  readonly shared: string | null
  readonly createdAt: Time.EpochMillis
  readonly updatedAt: Time.EpochMillis
}

/**
 * A document several tasks share (one reply pushed to many destinations): stored once, by content hash, in the
 * same transaction as the first task that names it, and kept while any stored task names it.
 */
export interface SharedPayload {
  /** `sha256:<hex>` of `json`. */
  readonly hash: string
  readonly json: string
}

/** A shared payload for a JSON text; build it once and pass it to every task that shares it. */
export const sharedPayload = (json: string): SharedPayload => ({
  hash: `sha256:${createHash("sha256").update(json).digest("hex")}`,
  json
})

/** The store could not read or write its rows. */
export class TaskStoreError extends Schema.TaggedError<TaskStoreError>()("TaskStoreError", {
  message: Schema.String
}) {}

/** A new task handed to the group commit. */
export interface Insert {
  readonly row: TaskRecord
  /** Written in the same transaction as the row (kept as it is when already stored). */
  readonly shared: SharedPayload | undefined
  /**
   * When a stored task (or an earlier insert of the same batch) has the row's idempotency key, the row is not
   * written: that task is the answer.
   */
  readonly dedupe: boolean
}

/**
 * Stored tasks that change the same way at once (the claim of a batch, the tasks that succeeded in the same
 * millisecond): every row's `status`, `attempts`, `lastError` and `updatedAt` are these, and its other columns are
 * as stored. A backend with a multi-row statement writes the group as one; the others write `rows`.
 */
export interface Transition {
  readonly status: TaskStatus
  readonly attempts: number
  readonly lastError: string | null
  readonly updatedAt: Time.EpochMillis
  /** The tasks after the change (also what is written when a row was deleted meanwhile). */
  readonly rows: ReadonlyArray<TaskRecord>
}

/** What one commit writes, atomically: inserts, then snapshots, then transitions. */
export interface Batch {
  readonly inserts: ReadonlyArray<Insert>
  /** Snapshots of stored tasks, one per task (the latest). */
  readonly updates: ReadonlyArray<TaskRecord>
  /** A task is in at most one transition of a batch, and in no snapshot handed over after its transition. */
  readonly transitions?: ReadonlyArray<Transition> | undefined
}

/**
 * The rows, without the group commit: what `layerMemory` and `layerSqlite` differ in. A shared payload goes when
 * no stored task names it any more.
 */
export interface Backend {
  /** Commits a batch; answers, by insert id, the stored task of every deduplicated insert that was not written. */
  readonly commit: (batch: Batch) => Effect.Effect<ReadonlyMap<string, TaskRecord>, TaskStoreError>
  readonly shared: (hash: string) => Effect.Effect<Option.Option<string>, TaskStoreError>
  /** Pending and running tasks, in next-attempt order. */
  readonly unfinished: Effect.Effect<ReadonlyArray<TaskRecord>, TaskStoreError>
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskRecord>, TaskStoreError>
  /** Tasks with `status` (any when undefined), most recently updated first. */
  readonly list: (
    status: TaskStatus | undefined,
    limit: number
  ) => Effect.Effect<ReadonlyArray<TaskRecord>, TaskStoreError>
  /** Deletes finished rows with `updatedAt < olderThan`; returns how many. */
  readonly pruneFinished: (olderThan: Time.EpochMillis) => Effect.Effect<number, TaskStoreError>
}

export interface TaskStoreShape extends Omit<Backend, "commit"> {
  /**
   * Stores a new task in the next group commit and waits for that commit. With `dedupe`, a stored task that has
   * the same idempotency key wins: it is returned and nothing is written.
   */
  readonly insert: (
    row: TaskRecord,
    options: { readonly shared?: SharedPayload | undefined; readonly dedupe: boolean }
  ) => Effect.Effect<TaskRecord, TaskStoreError>
  /** Records a snapshot of a stored task in the next group commit and waits for that commit. */
  readonly update: (row: TaskRecord) => Effect.Effect<void, TaskStoreError>
  /** Records snapshots of stored tasks in the next group commit and waits for that commit. */
  readonly updateAll: (rows: ReadonlyArray<TaskRecord>) => Effect.Effect<void, TaskStoreError>
  /**
   * Records changes of stored tasks that only set `status`, `attempts`, `lastError` and `updatedAt` (every other
   * column of each row is as stored) in the next group commit, and waits for that commit. Rows that change the
   * same way are written together (one statement on SQLite), so a claim or a run of successes costs one.
   */
  readonly transition: (rows: ReadonlyArray<TaskRecord>) => Effect.Effect<void, TaskStoreError>
  /** Records a snapshot in the next group commit without waiting (a failed commit is logged by the writer). */
  readonly updateLater: (row: TaskRecord) => Effect.Effect<void>
  /**
   * `insert` as a callback, for the runner's hot path: hands the row to the next group commit and calls
   * `committed` with that commit's outcome (on success, a map from insert id to the stored task that won a dedupe;
   * the row was written when its id is not in it). The caller waits in its own `Effect.async`, so a schedule is
   * one suspension and no effect of the store's.
   */
  readonly submitInsert: (insert: Insert, committed: (exit: Committed) => void) => void
  /** `transition([row])` as a callback (see `submitInsert`): a task's outcome, on the runner's hot path. */
  readonly submitTransition: (row: TaskRecord, committed: (exit: Committed) => void) => void
  /**
   * `transition(rows)` as a callback (see `submitInsert`): a claim. `committed` runs once every row is committed
   * (with the first failure, if a commit failed), in the writer's fiber, before the waiters of later batches.
   */
  readonly submitTransitions: (rows: ReadonlyArray<TaskRecord>, committed: (exit: Committed) => void) => void
  /**
   * Waits until everything handed over before it has been written (fails if the last batch did; an earlier batch
   * that failed was logged, and its waiters told).
   */
  readonly flush: Effect.Effect<void, TaskStoreError>
}

export class TaskStore extends Context.Tag("effect-agent-host/TaskStore")<TaskStore, TaskStoreShape>() {}

export interface Options {
  /** Rows per commit at most (default 2048); more wait for the next one. */
  readonly maxBatch?: number
}

export const defaults = { maxBatch: 2048 } as const

// ---------------------------------------------------------------------------------------------------------------
// Group commit

/** A commit's outcome: on success, the stored task of every deduplicated insert that was not written, by insert id. */
export type Committed = Exit.Exit<ReadonlyMap<string, TaskRecord>, TaskStoreError>

interface Group {
  readonly status: TaskStatus
  readonly attempts: number
  readonly lastError: string | null
  readonly updatedAt: Time.EpochMillis
  readonly rows: Array<TaskRecord>
}

interface Pending {
  readonly inserts: Array<Insert>
  readonly updates: Map<string, TaskRecord>
  /**
   * Transitions, by what they set: a batch holds a few (claims and successes, a group per millisecond), found by
   * comparing, and by key (`keyed`) once there are more. `transitioned` holds their task ids.
   */
  groups: Array<Group> | undefined
  keyed: Map<string, Group> | undefined
  transitioned: Set<string> | undefined
  size: number
  /**
   * Resumed with the batch's outcome once it is committed (or failed). Plain callbacks registered by `Effect.async`,
   * not a Deferred: a task waits for two commits, and the Deferred's own bookkeeping showed in the profile.
   */
  waiters: Array<(exit: Committed) => void> | undefined
}

const pending = (): Pending => ({
  inserts: [],
  updates: new Map(),
  groups: undefined,
  keyed: undefined,
  transitioned: undefined,
  size: 0,
  waiters: undefined
})

const groupKey = (row: Pick<TaskRecord, "status" | "attempts" | "updatedAt" | "lastError">) =>
  `${row.status} ${row.attempts} ${row.updatedAt} ${row.lastError ?? ""}`

// Groups a batch finds by comparing before it keys them.
const scannedGroups = 8

const sameChange = (group: Group, row: TaskRecord) =>
  row.status === group.status && row.attempts === group.attempts && row.updatedAt === group.updatedAt &&
  row.lastError === group.lastError

/** Adds a transitioned row to its group in `batch`. */
const addTransition = (batch: Pending, row: TaskRecord) => {
  const groups = batch.groups ??= []
  let group: Group | undefined
  // The newest first: a row usually changes like one of the last few (a worker's success and its next claim).
  for (let i = groups.length - 1, end = Math.max(0, groups.length - scannedGroups); i >= end; i--) {
    if (sameChange(groups[i]!, row)) {
      group = groups[i]!
      break
    }
  }
  if (group === undefined && groups.length > scannedGroups) group = batch.keyed?.get(groupKey(row))
  if (group === undefined) {
    const { attempts, lastError, status, updatedAt } = row
    group = { status, attempts, lastError, updatedAt, rows: [] }
    groups.push(group)
    if (groups.length > scannedGroups) {
      const keyed = batch.keyed ??= new Map()
      // Key the groups only compared so far, then each new one.
      if (keyed.size === 0) { for (const g of groups) keyed.set(groupKey(g), g) }
      else keyed.set(groupKey(group), group)
    }
  }
  group.rows.push(row)
  ;(batch.transitioned ??= new Set()).add(row.id)
}

const noDuplicates: ReadonlyMap<string, TaskRecord> = new Map()

const voidExit = Exit.void

/**
 * The group commit over `backend`: one writer fiber (scoped) commits batches in the order they filled. The scope's
 * finalizer commits what is still handed over before the writer stops.
 */
export const make = (backend: Backend, options: Options = {}) =>
  Effect.gen(function*() {
    const maxBatch = Math.max(1, options.maxBatch ?? defaults.maxBatch)
    let open = pending()
    // Batches that reached `maxBatch`, oldest first; they commit before `open`.
    const full: Array<Pending> = []
    let committing: Pending | undefined
    // Set while the writer waits for work.
    let wake: (() => void) | undefined

    // The batch a new row joins; wakes the writer if it waits. A task already in a transition of the open batch
    // starts a new one, so its changes are written in the order they were made.
    const batchFor = (id?: string): Pending => {
      if (open.size >= maxBatch || (id !== undefined && open.transitioned?.has(id) === true)) {
        full.push(open)
        open = pending()
      }
      open.size++
      if (wake !== undefined) {
        const resume = wake
        wake = undefined
        resume()
      }
      return open
    }

    const onCommit = (batch: Pending, waiter: (exit: Committed) => void) => {
      ;(batch.waiters ??= []).push(waiter)
    }

    const awaitBatch = (batch: Pending): Effect.Effect<void, TaskStoreError> =>
      Effect.async((resume) =>
        onCommit(batch, (exit) => resume(Exit.isSuccess(exit) ? voidExit : Exit.failCause(exit.cause)))
      )

    const next = (): Pending | undefined => {
      const first = full.shift()
      if (first !== undefined) return first
      if (open.size === 0) return undefined
      const batch = open
      open = pending()
      return batch
    }

    const commitOne = (batch: Pending) =>
      Effect.flatMap(
        Effect.exit(backend.commit({
          inserts: batch.inserts,
          updates: [...batch.updates.values()],
          transitions: batch.groups
        })),
        (exit) => {
          committing = undefined
          const waiters = batch.waiters
          if (waiters !== undefined) { for (const waiter of waiters) waiter(exit) }
          return Exit.isFailure(exit) ? Effect.logError("task bookkeeping write failed", exit.cause) : Effect.void
        }
      )

    const waitForWork = Effect.async<void>((resume) => {
      // Rows may have arrived since `next` (the fiber can yield between the two).
      if (open.size > 0 || full.length > 0) return resume(Effect.void)
      wake = () => resume(Effect.void)
      return Effect.sync(() => {
        wake = undefined
      })
    })

    // Waiting is interruptible, committing is not: a batch is written whole or, on a failed write, not at all.
    const writer = Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        const batch = next()
        if (batch !== undefined) {
          committing = batch
          return commitOne(batch)
        }
        // One more turn of the scheduler after the wakeup: everything runnable now hands its rows over to the
        // same batch.
        return Effect.zipRight(restore(waitForWork), Effect.yieldNow())
      })
    ).pipe(Effect.forever)

    const flush: Effect.Effect<void, TaskStoreError> = Effect.suspend(() => {
      // Batches commit in order, so the last one holding anything is the one to wait for (the writer was woken
      // when its first row arrived).
      const last = open.size > 0 ? open : full.length > 0 ? full[full.length - 1]! : committing
      return last === undefined ? Effect.void : awaitBatch(last)
    })

    // Finalizers run in reverse: this one (commit what is left) before the writer fiber is interrupted.
    yield* Effect.forkScoped(writer)
    yield* Effect.addFinalizer(() => Effect.ignore(flush))

    const submitTransitions = (rows: ReadonlyArray<TaskRecord>, committed: (exit: Committed) => void) => {
      // Usually one batch; else the last one the rows went to commits after the others (batches commit in order)
      // and answers with the first failure.
      let first: Pending | undefined
      let last: Pending | undefined
      for (const row of rows) {
        const batch = batchFor(row.id)
        addTransition(batch, row)
        first ??= batch
        last = batch
      }
      if (last === undefined) return committed(Exit.succeed(noDuplicates))
      if (first === last) return onCommit(last, committed)
      let failed: Committed | undefined
      onCommit(first!, (exit) => {
        if (Exit.isFailure(exit)) failed = exit
      })
      onCommit(last, (exit) => committed(failed ?? exit))
    }

    const store: TaskStoreShape = {
      insert: (row, { dedupe, shared }) =>
        Effect.async((resume) => {
          const batch = batchFor()
          batch.inserts.push({ row, shared, dedupe })
          onCommit(
            batch,
            (exit) =>
              resume(Exit.isSuccess(exit) ? Exit.succeed(exit.value.get(row.id) ?? row) : Exit.failCause(exit.cause))
          )
        }),
      update: (row) =>
        Effect.suspend(() => {
          const batch = batchFor(row.id)
          batch.updates.set(row.id, row)
          return awaitBatch(batch)
        }),
      updateAll: (rows) =>
        Effect.suspend(() => {
          // Usually one batch; the last one the rows went to commits after the others (batches commit in order,
          // and a failed one fails its own waiters, which the last one's outcome does not hide: see below).
          let first: Pending | undefined
          let last: Pending | undefined
          for (const row of rows) {
            const batch = batchFor(row.id)
            batch.updates.set(row.id, row)
            first ??= batch
            last = batch
          }
          if (last === undefined) return Effect.void
          if (first === last) return awaitBatch(last)
          return Effect.zipRight(awaitBatch(first!), awaitBatch(last))
        }),
      transition: (rows) =>
        rows.length === 0 ?
          Effect.void :
          Effect.async((resume) =>
            submitTransitions(rows, (exit) => resume(Exit.isSuccess(exit) ? voidExit : Exit.failCause(exit.cause)))
          ),
      updateLater: (row) =>
        Effect.sync(() => {
          batchFor(row.id).updates.set(row.id, row)
        }),
      submitInsert: (insert, committed) => {
        const batch = batchFor()
        batch.inserts.push(insert)
        onCommit(batch, committed)
      },
      submitTransition: (row, committed) => {
        const batch = batchFor(row.id)
        addTransition(batch, row)
        onCommit(batch, committed)
      },
      submitTransitions,
      flush,
      shared: backend.shared,
      unfinished: backend.unfinished,
      get: backend.get,
      list: backend.list,
      pruneFinished: backend.pruneFinished
    }
    return store
  })

// ---------------------------------------------------------------------------------------------------------------
// Memory

/** Rows in process; finished rows beyond `keepFinished` are forgotten oldest first. */
export const memoryBackend = (keepFinished = 10_000): Backend => {
  const rows = new Map<string, TaskRecord>()
  // Idempotency key -> the first task stored with it.
  const byKey = new Map<string, string>()
  // Finished ids in the order they finished (a Map keeps insertion order and deletes in O(1)).
  const finished = new Map<string, true>()
  // Shared payloads with how many stored rows name them.
  const shared = new Map<string, { readonly json: string; refs: number }>()

  const remove = (row: TaskRecord) => {
    rows.delete(row.id)
    finished.delete(row.id)
    if (byKey.get(row.idempotencyKey) === row.id) byKey.delete(row.idempotencyKey)
    const entry = row.shared === null ? undefined : shared.get(row.shared)
    if (entry !== undefined && --entry.refs <= 0) shared.delete(row.shared!)
  }

  const put = (row: TaskRecord) => {
    const before = rows.get(row.id)
    rows.set(row.id, row)
    if (before === undefined) {
      if (!byKey.has(row.idempotencyKey)) byKey.set(row.idempotencyKey, row.id)
      const entry = row.shared === null ? undefined : shared.get(row.shared)
      if (entry !== undefined) entry.refs++
    }
    if (isTerminal(row.status)) {
      if (before === undefined || !isTerminal(before.status)) finished.set(row.id, true)
    } else {
      finished.delete(row.id)
    }
  }

  return {
    commit: ({ inserts, transitions, updates }) =>
      Effect.sync(() => {
        let duplicates: Map<string, TaskRecord> | undefined
        const added: Array<SharedPayload> = []
        for (const { dedupe, row, shared: payload } of inserts) {
          const holder = dedupe ? byKey.get(row.idempotencyKey) : undefined
          const existing = holder === undefined ? undefined : rows.get(holder)
          if (existing !== undefined) {
            ;(duplicates ??= new Map()).set(row.id, existing)
            continue
          }
          if (payload !== undefined && !shared.has(payload.hash)) {
            shared.set(payload.hash, { json: payload.json, refs: 0 })
            added.push(payload)
          }
          put(row)
        }
        for (const row of updates) put(row)
        if (transitions !== undefined) { for (const group of transitions) for (const row of group.rows) put(row) }
        for (const payload of added) {
          if (shared.get(payload.hash)?.refs === 0) shared.delete(payload.hash)
        }
        for (const id of finished.keys()) {
          if (finished.size <= keepFinished) break
          const row = rows.get(id)
          if (row === undefined) finished.delete(id)
          else remove(row)
        }
        return duplicates ?? noDuplicates
      }),
    shared: (hash) => Effect.sync(() => Option.map(Option.fromNullable(shared.get(hash)), (entry) => entry.json)),
    unfinished: Effect.sync(() =>
      [...rows.values()].filter((r) => !isTerminal(r.status)).sort((a, b) => a.nextAttemptAt - b.nextAttemptAt)
    ),
    get: (id) => Effect.sync(() => Option.fromNullable(rows.get(id))),
    list: (status, limit) =>
      Effect.sync(() =>
        [...rows.values()]
          .filter((r) => status === undefined || r.status === status)
          .sort((a, b) => b.updatedAt - a.updatedAt)
          .slice(0, limit)
      ),
    pruneFinished: (olderThan) =>
      Effect.sync(() => {
        let removed = 0
        for (const row of [...rows.values()]) {
          if (isTerminal(row.status) && row.updatedAt < olderThan) {
            remove(row)
            removed++
          }
        }
        return removed
      })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SQLite

export const TABLE = "agent_host_tasks"
/** Shared payloads (`hash`, `body`), each stored once however many tasks name it. */
export const PAYLOADS_TABLE = "agent_host_task_payloads"

/** A task row as SQLite returns it. */
export interface SqlRow {
  readonly id: string
  readonly name: string
  readonly idempotency_key: string
  readonly status: string
  readonly attempts: number
  readonly phase: number
  readonly next_attempt_at: number
  readonly last_error: string | null
  readonly payload: string
  readonly retry: string | null
  readonly shared: string | null
  readonly created_at: number
  readonly updated_at: number
}

const isStatus = Schema.is(TaskStatus)

/** A row of the tasks table as a record (an unknown status reads as `failed`). */
export const fromSql = (row: SqlRow): TaskRecord => ({
  id: row.id,
  name: row.name,
  idempotencyKey: row.idempotency_key,
  status: isStatus(row.status) ? row.status : "failed",
  attempts: Number(row.attempts),
  phase: Number(row.phase),
  nextAttemptAt: Time.fromMillis(Number(row.next_attempt_at)),
  lastError: row.last_error,
  payload: row.payload,
  retry: row.retry,
  shared: row.shared ?? null,
  createdAt: Time.fromMillis(Number(row.created_at)),
  updatedAt: Time.fromMillis(Number(row.updated_at))
})

/** A row selected as values, columns in `SqlRow`'s order. */
const fromValues = (row: ReadonlyArray<unknown>): TaskRecord => {
  const status = row[3] as string
  return {
    id: row[0] as string,
    name: row[1] as string,
    idempotencyKey: row[2] as string,
    status: isStatus(status) ? status : "failed",
    attempts: Number(row[4]),
    phase: Number(row[5]),
    nextAttemptAt: Time.fromMillis(Number(row[6])),
    lastError: row[7] as string | null,
    payload: row[8] as string,
    retry: row[9] as string | null,
    shared: (row[10] as string | null) ?? null,
    createdAt: Time.fromMillis(Number(row[11])),
    updatedAt: Time.fromMillis(Number(row[12]))
  }
}

const describeCause = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "message" in cause ? String(cause.message) : String(cause)

const INSERT = `INSERT INTO agent_host_tasks (id, name, idempotency_key, status, attempts, phase, next_attempt_at,
  last_error, payload, retry, shared, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
const UPDATE = `UPDATE agent_host_tasks SET status = ?, attempts = ?, phase = ?, next_attempt_at = ?, last_error = ?,
  retry = ?, updated_at = ? WHERE id = ?`
const INSERT_PAYLOAD = `INSERT INTO agent_host_task_payloads (hash, body, created_at) VALUES (?, ?, ?)
  ON CONFLICT(hash) DO NOTHING`
// The key index leaves out tasks whose key is their id (scheduled without one): those are found by id.
const HOLDER_BY_KEY = `SELECT * FROM agent_host_tasks WHERE idempotency_key = ? AND idempotency_key <> id
  ORDER BY created_at LIMIT 1`
const HOLDER_BY_ID = `SELECT * FROM agent_host_tasks WHERE id = ? AND idempotency_key = id`
// Many rows in one statement: a claim or a run of successes (`Transition`).
const TRANSITION = `UPDATE agent_host_tasks SET status = ?, attempts = ?, last_error = ?, updated_at = ?
  WHERE id IN (SELECT value FROM json_each(?))`
const EXISTS = `SELECT 1 AS found FROM agent_host_tasks WHERE id = ?`
// The status indexes are partial (migration 7): a query names its index's condition (`status = 'succeeded'` or
// `status <> 'succeeded'`) word for word, or SQLite does not use it. Shared payloads go with the last task naming
// them (a trigger, see migration 5).
const PRUNE_SUCCEEDED = `DELETE FROM agent_host_tasks WHERE status = 'succeeded' AND updated_at < ?`
const PRUNE_FAILED = `DELETE FROM agent_host_tasks WHERE status <> 'succeeded' AND status IN ('failed', 'cancelled')
  AND updated_at < ?`

const insertRow = (statement: StateWriter.Statements, row: TaskRecord) =>
  statement(INSERT).run(
    row.id,
    row.name,
    row.idempotencyKey,
    row.status,
    row.attempts,
    row.phase,
    row.nextAttemptAt,
    row.lastError,
    row.payload,
    row.retry,
    row.shared,
    row.createdAt,
    row.updatedAt
  )

// Inserts go in statements of `INSERT_CHUNK` rows (measured ~5 µs a row against ~7.5 µs one by one).
const INSERT_CHUNK = 16
const INSERT_MANY = `INSERT INTO agent_host_tasks (id, name, idempotency_key, status, attempts, phase, next_attempt_at,
  last_error, payload, retry, shared, created_at, updated_at) VALUES ${
  Array.from({ length: INSERT_CHUNK }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
}`

const insertRows = (statement: StateWriter.Statements, rows: ReadonlyArray<TaskRecord>) => {
  let i = 0
  if (rows.length >= INSERT_CHUNK) {
    const many = statement(INSERT_MANY)
    const params: Array<unknown> = new Array(13 * INSERT_CHUNK)
    for (; i + INSERT_CHUNK <= rows.length; i += INSERT_CHUNK) {
      let p = 0
      for (let j = i; j < i + INSERT_CHUNK; j++) {
        const row = rows[j]!
        params[p++] = row.id
        params[p++] = row.name
        params[p++] = row.idempotencyKey
        params[p++] = row.status
        params[p++] = row.attempts
        params[p++] = row.phase
        params[p++] = row.nextAttemptAt
        params[p++] = row.lastError
        params[p++] = row.payload
        params[p++] = row.retry
        params[p++] = row.shared
        params[p++] = row.createdAt
        params[p++] = row.updatedAt
      }
      many.run(...params)
    }
  }
  for (; i < rows.length; i++) insertRow(statement, rows[i]!)
}

/**
 * A batch as one `StateWriter` step: prepared single-row statements inside the writer's transaction, which the
 * profile showed costs a third of the same batch as multi-row statements through `SqlClient`.
 */
const commitStep = (
  { inserts, transitions, updates }: Batch
): StateWriter.Step<ReadonlyMap<string, TaskRecord>> =>
(statement) => {
  let duplicates: Map<string, TaskRecord> | undefined
  // Keys inserted by this batch, for duplicates within it.
  let inserted: Map<string, TaskRecord> | undefined
  const rows: Array<TaskRecord> = []
  for (const { dedupe, row, shared } of inserts) {
    if (dedupe) {
      const stored = (statement(HOLDER_BY_KEY).get(row.idempotencyKey) ??
        statement(HOLDER_BY_ID).get(row.idempotencyKey)) as SqlRow | undefined
      const holder = inserted?.get(row.idempotencyKey) ?? (stored === undefined ? undefined : fromSql(stored))
      if (holder !== undefined) {
        ;(duplicates ??= new Map()).set(row.id, holder)
        continue
      }
      ;(inserted ??= new Map()).set(row.idempotencyKey, row)
    }
    if (shared !== undefined) statement(INSERT_PAYLOAD).run(shared.hash, shared.json, row.createdAt)
    rows.push(row)
  }
  insertRows(statement, rows)
  for (const row of updates) {
    const changed = statement(UPDATE).run(
      row.status,
      row.attempts,
      row.phase,
      row.nextAttemptAt,
      row.lastError,
      row.retry,
      row.updatedAt,
      row.id
    )
    // Deleted meanwhile (retention, by hand): the snapshot is the task.
    if (changed.changes === 0) insertRow(statement, row)
  }
  if (transitions !== undefined) {
    for (const { attempts, lastError, rows, status, updatedAt } of transitions) {
      // One statement for the group: a multi-row UPDATE costs ~5.5 µs a row against ~7 µs for an UPDATE each.
      const ids = JSON.stringify(rows.map((row) => row.id))
      const changed = statement(TRANSITION).run(status, attempts, lastError, updatedAt, ids)
      if (changed.changes < rows.length) {
        for (const row of rows) {
          if (statement(EXISTS).get(row.id) === undefined) insertRow(statement, row)
        }
      }
    }
  }
  return duplicates ?? noDuplicates
}

/**
 * Rows in the state database: written through its `StateWriter` (group-committed with the other services'
 * writes, on its native connection), read through the `SqlClient`. The tables come from the state migrations,
 * applied through the client first (a no-op when `StateDb` did).
 */
export const sqliteBackend: Effect.Effect<
  Backend,
  TaskStoreError,
  SqlClient.SqlClient | StateWriter.StateWriter
> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const writer = yield* StateWriter.StateWriter
  yield* Migrations.run.pipe(
    Effect.mapError((e) => new TaskStoreError({ message: `cannot prepare the task tables: ${describeCause(e)}` }))
  )
  const sqlError = (what: string) => (e: unknown) =>
    new TaskStoreError({ message: `task store ${what} failed: ${describeCause(e)}` })
  // The writer dies with what failed (a statement, a database locked too long): here that is a failed write the
  // runner retries, not a defect.
  const write = <A>(what: string, step: StateWriter.Step<A>) =>
    Effect.catchAllDefect(writer.write(step), (defect) => Effect.fail(sqlError(what)(defect)))

  const backend: Backend = {
    commit: (batch) => write("write", commitStep(batch)),
    shared: (hash) =>
      sql<{ readonly body: string }>`SELECT body FROM agent_host_task_payloads WHERE hash = ${hash}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.body)),
        Effect.mapError(sqlError("read"))
      ),
    // Resuming reads every unfinished row: as arrays (an object per row costs about twice as much) and sorted
    // here rather than through a temporary b-tree.
    unfinished: sql`SELECT id, name, idempotency_key, status, attempts, phase, next_attempt_at, last_error, payload,
      retry, shared, created_at, updated_at FROM agent_host_tasks
      WHERE status <> 'succeeded' AND status IN ('pending', 'running')`.values.pipe(
      Effect.map((rows) => rows.map(fromValues).sort((a, b) => a.nextAttemptAt - b.nextAttemptAt)),
      Effect.mapError(sqlError("load"))
    ),
    get: (id) =>
      sql<SqlRow>`SELECT * FROM agent_host_tasks WHERE id = ${id}`.pipe(
        Effect.map((rows) => rows[0] === undefined ? Option.none() : Option.some(fromSql(rows[0]))),
        Effect.mapError(sqlError("read"))
      ),
    list: (status, limit) =>
      (status === undefined ?
        sql<SqlRow>`SELECT * FROM agent_host_tasks ORDER BY updated_at DESC LIMIT ${limit}` :
        status === "succeeded" ?
        sql<SqlRow>`SELECT * FROM agent_host_tasks WHERE status = 'succeeded' ORDER BY updated_at DESC LIMIT ${limit}` :
        sql<SqlRow>`SELECT * FROM agent_host_tasks WHERE status <> 'succeeded' AND status = ${status}
          ORDER BY updated_at DESC LIMIT ${limit}`).pipe(
          Effect.map((rows) => rows.map(fromSql)),
          Effect.mapError(sqlError("list"))
        ),
    pruneFinished: (olderThan) =>
      write(
        "prune",
        (statement) =>
          statement(PRUNE_SUCCEEDED).run(olderThan).changes + statement(PRUNE_FAILED).run(olderThan).changes
      )
  }
  return backend
})

// ---------------------------------------------------------------------------------------------------------------
// Layers

/** Rows in process (finished ones beyond `keepFinished`, default 10 000, are forgotten oldest first). */
export const layerMemory = (options: Options & { readonly keepFinished?: number } = {}): Layer.Layer<TaskStore> =>
  Layer.scoped(TaskStore, make(memoryBackend(options.keepFinished), options))

/** Durable: rows in the state database (`StateDb.layer` provides the `SqlClient` and `StateWriter`). */
export const layerSqlite = (
  options: Options = {}
): Layer.Layer<TaskStore, TaskStoreError, SqlClient.SqlClient | StateWriter.StateWriter> =>
  Layer.scoped(TaskStore, Effect.flatMap(sqliteBackend, (backend) => make(backend, options)))
