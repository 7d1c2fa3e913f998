/**
 * Group commit for the state database: writes from concurrent turns share one transaction.
 *
 * `write(step)` queues a synchronous step (statements on one native better-sqlite3 connection, each SQL text
 * prepared once). The first write of a macrotask wakes the flusher, which waits for `setImmediate` so every write
 * queued in the same macrotask joins, then runs BEGIN IMMEDIATE, the steps and COMMIT in one synchronous go and
 * resumes the writers. A write completes only once its batch has committed, so an acknowledged write survives
 * kill -9 (WAL with synchronous = NORMAL: only an OS crash can lose the last commits) and every connection reads
 * it. Batches commit in FIFO order, so a `writeNoWait` is ordered before every later write.
 *
 * A step that throws fails only its own write (as a defect with the SQLite error): the batch is rolled back and
 * run again without it.
 *
 * The @effect/sql connection on the same file: a batch runs while holding that client's connection
 * (`sql.reserve`), so it never commits in the middle of one of its transactions, whose deferred BEGIN would then
 * fail with SQLITE_BUSY_SNAPSHOT when it writes after a read. Hence `write` refuses to run inside
 * `sql.withTransaction`: the batch would wait for the transaction, which would wait for the write.
 *
 * Any other connection holding the write lock: busy_timeout is 0 (waiting would block the event loop), so the
 * batch rolls back and retries on a timer, for at most `busyTimeout` (what the other connections wait), then its
 * writes die with `StateDbBusy`.
 *
 * Reusable by any service on the state database: a step may touch any table.
 */
import { SqlClient } from "@effect/sql"
import type { Scope } from "effect"
import { Cause, Clock, Context, Duration, Effect, Option, Schema } from "effect"
import * as NativeSqlite from "./NativeSqlite.js"

/** How long a batch retries while another connection holds the write lock (the other connections' busy_timeout). */
export const busyTimeout: Duration.Duration = Duration.seconds(5)

export class StateDbBusy extends Schema.TaggedError<StateDbBusy>()("StateDbBusy", {
  database: Schema.String,
  waitedMillis: Schema.Number
}) {
  override get message(): string {
    return `The state database ${this.database} stayed locked by another connection for ${this.waitedMillis} ms, ` +
      `so a write was not committed. Something holds a write transaction open: a long transaction in this ` +
      `process, or another program writing to the database.`
  }
}

export class StateWriterClosed extends Schema.TaggedError<StateWriterClosed>()("StateWriterClosed", {
  database: Schema.String
}) {
  override get message(): string {
    return `The state database ${this.database} is closed (the host is shutting down); the write was not made.`
  }
}

export class StateWriterUnavailable extends Schema.TaggedError<StateWriterUnavailable>()("StateWriterUnavailable", {
  database: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot open ${this.database} for writing: ${this.reason}`
  }
}

export class WriteInTransaction extends Schema.TaggedError<WriteInTransaction>()("WriteInTransaction", {}) {
  override get message(): string {
    return `StateWriter.write was called inside sql.withTransaction: its batch would wait for that transaction, ` +
      `which waits for the write. Write through the transaction's own client, or outside the transaction.`
  }
}

/** Prepares `sql` on the writer's connection, once per SQL text. */
export type Statements = (sql: string) => NativeSqlite.Statement

/** A synchronous write: runs inside the batch's transaction; what it returns is the write's result. */
export type Step<A> = (statement: Statements) => A

export interface Stats {
  /** Transactions committed. */
  readonly commits: number
  /** Writes committed. */
  readonly writes: number
  /** Writes that failed (their step threw, or the database stayed locked). */
  readonly failed: number
  /** Times a batch found the database locked by another connection and retried. */
  readonly busyRetries: number
  /** Writes queued and not yet committed. */
  readonly pending: number
}

export interface StateWriterShape {
  /** Runs `step` in the next batch; completes with its result once the batch has committed. */
  readonly write: <A>(step: Step<A>) => Effect.Effect<A>
  /**
   * Queues `step` and completes at once (after waiting for room when the queue is full): for writes the caller
   * does not wait for, still committed before any later write. A failure is logged.
   */
  readonly writeNoWait: (step: Step<unknown>) => Effect.Effect<void>
  /**
   * Runs `step` on this connection at once, between batches: a read of what is committed (not of writes still
   * queued, as on any other connection), without the SQL client's Effect machinery (~100 steps a statement) or its
   * lock. For the reads on a turn's path.
   */
  readonly read: <A>(step: Step<A>) => Effect.Effect<A>
  readonly stats: Effect.Effect<Stats>
}

export class StateWriter extends Context.Tag("effect-agent-host/StateWriter")<StateWriter, StateWriterShape>() {}

export interface Options {
  /** The database file (already migrated). */
  readonly filename: string
  /** The @effect/sql client on the same file: batches hold its connection while they run. */
  readonly sql: SqlClient.SqlClient
  /** Writes queued at most; beyond it `write` waits for room (default 50 000). */
  readonly maxPending?: number
  /** Writes per transaction at most, so one flush never holds the event loop long (default 1 000). */
  readonly maxBatch?: number
  readonly busyTimeout?: Duration.DurationInput
  /** The connection's `wal_autocheckpoint` in pages (default SQLite's, 1 000; raised while `Checkpointer` runs). */
  readonly autocheckpointPages?: number
  /** The connection's `journal_size_limit` in bytes (default none). */
  readonly walSizeLimitBytes?: number
}

interface Entry {
  /** Cleared (with `resume` and `result`) once the write is complete: see `complete`. */
  step: Step<unknown> | undefined
  /** Undefined for a no-wait write. */
  resume: ((result: Effect.Effect<unknown>) => void) | undefined
  result: unknown
  failed: boolean
  error: unknown
}

const isBusy = (error: unknown) => NativeSqlite.isSqliteError(error) && error.code.startsWith("SQLITE_BUSY")

const maxRetryDelayMillis = 50

/** The writer on `options.filename`, open for the scope; closing flushes what is queued, then closes. */
export const make = (options: Options): Effect.Effect<StateWriterShape, StateWriterUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const database = options.filename
    const maxPending = options.maxPending ?? 50_000
    const maxBatch = options.maxBatch ?? 1_000
    const busyTimeoutMillis = Duration.toMillis(options.busyTimeout ?? busyTimeout)
    const sql = options.sql

    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          // timeout 0: SQLITE_BUSY at once instead of a synchronous wait that would stall the event loop
          const db = NativeSqlite.open(database, { timeout: 0 })
          try {
            db.pragma("journal_mode = WAL")
            db.pragma("synchronous = NORMAL")
            if (options.autocheckpointPages !== undefined) {
              db.pragma(`wal_autocheckpoint = ${options.autocheckpointPages}`)
            }
            if (options.walSizeLimitBytes !== undefined) {
              db.pragma(`journal_size_limit = ${options.walSizeLimitBytes}`)
            }
            return db
          } catch (error) {
            db.close()
            throw error
          }
        },
        catch: (cause) =>
          new StateWriterUnavailable({ database, reason: cause instanceof Error ? cause.message : String(cause) })
      }),
      (db) => Effect.sync(() => db.close())
    )
    const prepared = new Map<string, NativeSqlite.Statement>()
    const statement: Statements = (text) => {
      let found = prepared.get(text)
      if (found === undefined) {
        found = db.prepare(text)
        prepared.set(text, found)
      }
      return found
    }
    const begin = db.prepare("BEGIN IMMEDIATE")
    const commit = db.prepare("COMMIT")
    const rollback = db.prepare("ROLLBACK")

    const stats = { commits: 0, writes: 0, failed: 0, busyRetries: 0 }
    const pending: Array<Entry> = []
    // The queue is bounded: a writer past `maxPending` waits here for room. Its caller is a turn that waits for
    // the commit anyway, so this is backpressure on turns, never a dropped write.
    const waitingForRoom: Array<() => void> = []
    let wake: (() => void) | undefined
    let closed = false

    const enqueue = (entry: Entry) => {
      pending.push(entry)
      if (wake !== undefined) {
        const resume = wake
        wake = undefined
        resume()
      }
    }

    /** Queues `entry` (then calls `queued`) now or once there is room; returns how to give up waiting. */
    const submit = (entry: Entry, queued: () => void): Effect.Effect<void> | undefined => {
      if (pending.length < maxPending && waitingForRoom.length === 0) {
        enqueue(entry)
        queued()
        return undefined
      }
      const admit = () => {
        enqueue(entry)
        queued()
      }
      waitingForRoom.push(admit)
      return Effect.sync(() => {
        const at = waitingForRoom.indexOf(admit)
        if (at !== -1) waitingForRoom.splice(at, 1)
      })
    }

    const admitWaiting = () => {
      while (waitingForRoom.length > 0 && pending.length < maxPending) waitingForRoom.shift()!()
    }

    const failAll = (batch: ReadonlyArray<Entry>, error: unknown) => {
      for (const entry of batch) {
        if (entry.failed) continue
        entry.failed = true
        entry.error = error
      }
    }

    const rollbackQuietly = () => {
      try {
        if (db.inTransaction) rollback.run()
      } catch {
        // SQLite already rolled back (some errors do); nothing is left to undo
      }
    }

    /** One synchronous attempt at the batch; "busy" when another connection holds the write lock. */
    const runBatch = (batch: ReadonlyArray<Entry>): "done" | "busy" => {
      for (;;) {
        try {
          begin.run()
        } catch (error) {
          if (isBusy(error)) return "busy"
          failAll(batch, error)
          return "done"
        }
        let stepFailed = false
        for (const entry of batch) {
          if (entry.failed) continue
          try {
            entry.result = entry.step === undefined ? undefined : entry.step(statement)
          } catch (error) {
            entry.failed = true
            entry.error = error
            stepFailed = true
            break
          }
        }
        if (!stepFailed) {
          try {
            commit.run()
            stats.commits++
            return "done"
          } catch (error) {
            rollbackQuietly()
            if (isBusy(error)) return "busy"
            failAll(batch, error)
            return "done"
          }
        }
        // Undo the partial batch and run it again without the failed write.
        rollbackQuietly()
      }
    }

    const runHoldingSqlConnection = (batch: ReadonlyArray<Entry>) =>
      Effect.orDie(Effect.scoped(Effect.zipRight(sql.reserve, Effect.sync(() => runBatch(batch)))))

    /**
     * Resumes the writers of a finished batch; returns the failures nobody waits for. Each entry lets go of its
     * step, result and writer as it is done: measured under load, entries still holding them kept the writers'
     * fibers (and their turns) alive past the next scavenges, to be promoted and left to a major GC.
     */
    const complete = (batch: ReadonlyArray<Entry>): Array<unknown> => {
      const unobserved: Array<unknown> = []
      for (const entry of batch) {
        if (entry.failed) stats.failed++
        else stats.writes++
        const resume = entry.resume
        const outcome: Effect.Effect<unknown> = entry.failed ? Effect.die(entry.error) : Effect.succeed(entry.result)
        entry.step = undefined
        entry.resume = undefined
        entry.result = undefined
        if (resume !== undefined) resume(outcome)
        else if (entry.failed) unobserved.push(entry.error)
      }
      return unobserved
    }

    const flushBatch = Effect.gen(function*() {
      const batch = pending.length <= maxBatch ? pending.splice(0) : pending.splice(0, maxBatch)
      admitWaiting()
      if (batch.length === 0) return
      let firstBusyAt: number | undefined
      let delay = 1
      while ((yield* runHoldingSqlConnection(batch)) === "busy") {
        const now = yield* Clock.currentTimeMillis
        firstBusyAt ??= now
        if (now - firstBusyAt >= busyTimeoutMillis) {
          failAll(batch, new StateDbBusy({ database, waitedMillis: now - firstBusyAt }))
          break
        }
        stats.busyRetries++
        yield* Effect.sleep(Duration.millis(delay))
        delay = Math.min(delay * 2, maxRetryDelayMillis)
      }
      for (const error of complete(batch)) {
        yield* Effect.logError("a state write nobody waited for failed", Cause.die(error))
      }
    }).pipe(Effect.uninterruptible)

    const waitForWork = Effect.async<void>((resume) => {
      if (pending.length > 0) return resume(Effect.void)
      wake = () => resume(Effect.void)
      return Effect.sync(() => {
        wake = undefined
      })
    })
    // Writes queued in the same macrotask (and its microtasks) join the batch.
    const nextMacrotask = Effect.async<void>((resume) => {
      const handle = setImmediate(() => resume(Effect.void))
      return Effect.sync(() => clearImmediate(handle))
    })

    // Added before the flusher is forked in the scope, so it runs after the flusher was interrupted: what is
    // still queued is written before the connection closes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closed = true
        while (pending.length > 0 || waitingForRoom.length > 0) yield* flushBatch
      })
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.zipRight(waitForWork, nextMacrotask), flushBatch))
    )

    const closedError = new StateWriterClosed({ database })
    const inTransaction = new WriteInTransaction()

    const write = <A>(step: Step<A>): Effect.Effect<A> =>
      Effect.withFiberRuntime<A>((fiber) =>
        Option.isSome(Context.getOption(fiber.currentContext, SqlClient.TransactionConnection)) ?
          Effect.die(inTransaction) :
          Effect.async<A>((resume) => {
            if (closed) return resume(Effect.die(closedError))
            const entry: Entry = {
              step,
              resume: resume as (result: Effect.Effect<unknown>) => void,
              result: undefined,
              failed: false,
              error: undefined
            }
            return submit(entry, noop)
          })
      )

    const writeNoWait = (step: Step<unknown>): Effect.Effect<void> =>
      Effect.async<void>((resume) => {
        if (closed) return resume(Effect.die(closedError))
        const entry: Entry = { step, resume: undefined, result: undefined, failed: false, error: undefined }
        return submit(entry, () => resume(Effect.void))
      })

    // A batch runs from its BEGIN to its COMMIT in one synchronous call, so a read never lands inside one.
    const read = <A>(step: Step<A>): Effect.Effect<A> =>
      Effect.sync(() => {
        if (closed) throw closedError
        return step(statement)
      })

    return StateWriter.of({
      write,
      writeNoWait,
      read,
      stats: Effect.sync((): Stats => ({ ...stats, pending: pending.length + waitingForRoom.length }))
    })
  })

const noop = () => {}
