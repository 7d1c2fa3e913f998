/**
 * The durable task runner: named handlers, Schema-encoded JSON payloads, retries driven by a `Schedule`,
 * idempotency keys, a phase cursor per task, dead letters and replay, bounded concurrency, a capacity for waiting
 * tasks that callers check before taking on work (`accepting`), and a drain on shutdown.
 *
 * Every state change of a task is a snapshot of its row handed to one writer fiber, which commits whatever
 * has queued up in one transaction (group commit). `layerMemory` keeps the rows in process; `layerSqlite`
 * keeps them in a SQLite table, so pending tasks resume after a crash with their attempts and next-attempt
 * time.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { ParseResult } from "effect"
import {
  Config,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberSet,
  Layer,
  Option,
  Queue,
  Schedule,
  ScheduleIntervals,
  Schema
} from "effect"
import { createHash } from "node:crypto"
import { issueId } from "../domain/Ids.js"
import * as Time from "../domain/Time.js"
import * as Persistence from "../state/Persistence.js"

export const TaskStatus = Schema.Literal("pending", "running", "succeeded", "failed", "cancelled")
export type TaskStatus = typeof TaskStatus.Type

export interface TaskHandle {
  readonly id: string
  readonly name: string
  readonly idempotencyKey: string
}

/** Why an attempt failed: retryable (with an optional server-requested wait) or terminal. */
export interface TaskFailure {
  readonly retryable: boolean
  /** Replaces the schedule's next delay (a 429's retry-after). */
  readonly retryAfterMillis?: number
  readonly message: string
}

export class TaskFailed extends Data.TaggedError("TaskFailed")<TaskFailure> {
  static retryable(message: string, retryAfterMillis?: number): TaskFailed {
    return new TaskFailed(
      retryAfterMillis === undefined ? { retryable: true, message } : {
        retryable: true,
        message,
        retryAfterMillis
      }
    )
  }
  static terminal(message: string): TaskFailed {
    return new TaskFailed({ retryable: false, message })
  }
}

/** The runner refused an operation (unknown handler, payload that does not encode, shutting down, ...). */
export class TaskRunnerError extends Schema.TaggedError<TaskRunnerError>()("TaskRunnerError", {
  message: Schema.String
}) {}

/** A per-task retry policy as data, so it survives a restart with the task. */
export const RetryPolicy = Schema.Struct({
  maxAttempts: Schema.Int.pipe(Schema.positive()),
  initialDelayMillis: Schema.Number.pipe(Schema.nonNegative()),
  factor: Schema.Number.pipe(Schema.positive()),
  maxDelayMillis: Schema.Number.pipe(Schema.nonNegative()),
  jitter: Schema.optional(Schema.Boolean)
})
export type RetryPolicy = typeof RetryPolicy.Type

export const defaultRetryPolicy: RetryPolicy = {
  maxAttempts: 5,
  initialDelayMillis: 1_000,
  factor: 2,
  maxDelayMillis: 60_000,
  jitter: true
}

/** The schedule a policy describes: exponential, jittered, capped, `maxAttempts - 1` retries. */
export const retrySchedule = (policy: RetryPolicy): Schedule.Schedule<unknown, unknown> => {
  const base = Schedule.exponential(Duration.millis(policy.initialDelayMillis), policy.factor)
  const jittered = policy.jitter === false ? base : Schedule.jittered(base)
  return jittered.pipe(
    Schedule.modifyDelay((delay) => Duration.min(delay, Duration.millis(policy.maxDelayMillis))),
    Schedule.intersect(Schedule.recurs(policy.maxAttempts - 1))
  )
}

/** Default: from 1 s, ×2, capped at 60 s, jittered, 5 attempts. */
export const defaultRetry: Schedule.Schedule<unknown, unknown> = retrySchedule(defaultRetryPolicy)

/** A task type: a name and the schema its payload is stored with. */
export interface TaskDefinition<A, I> {
  readonly name: string
  readonly payload: Schema.Schema<A, I>
}

export const define = <A, I>(name: string, payload: Schema.Schema<A, I>): TaskDefinition<A, I> => ({ name, payload })

/** What a handler knows about the attempt it runs. */
export interface TaskContext {
  readonly id: string
  readonly idempotencyKey: string
  /** 1 for the first attempt. */
  readonly attempt: number
  /** How many phases earlier attempts completed (the phase cursor). */
  readonly phase: number
  /** Durably records that phases up to `phase` are done; a retry or restart starts after them. */
  readonly completePhase: (phase: number) => Effect.Effect<void>
  /** The task's shared payload (`ScheduleOptions.shared`), as JSON; undefined when it has none. */
  readonly shared: string | undefined
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

export interface ScheduleOptions {
  /** Scheduling the same key again returns the first task instead of running it twice. Default: the task id. */
  readonly idempotencyKey?: string
  /** Overrides the handler's retry schedule for this task. */
  readonly retry?: RetryPolicy
  /** Waits this long before the first attempt. */
  readonly delay?: Duration.DurationInput
  /** A document stored once for every task naming it; the handler reads it as `context.shared`. */
  readonly shared?: SharedPayload
}

export interface RegisterOptions {
  /** The handler's retry schedule (default `defaultRetry`); its input is the attempt's `TaskFailure`. */
  readonly retry?: Schedule.Schedule<unknown, TaskFailure>
}

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

export interface TaskRunnerShape {
  /** Registers a handler; fails once the runner has started. */
  readonly register: <A, I>(
    definition: TaskDefinition<A, I>,
    run: (payload: A, context: TaskContext) => Effect.Effect<void, TaskFailure>,
    options?: RegisterOptions
  ) => Effect.Effect<void, TaskRunnerError>
  /** Resumes stored tasks and starts the workers; idempotent. */
  readonly start: Effect.Effect<void>
  /**
   * Persists the task, then queues it. Never waits for room: a stored task is accepted even past `queueCapacity`
   * (check `accepting` before taking on work that will schedule tasks).
   */
  readonly schedule: <A, I>(
    definition: TaskDefinition<A, I>,
    payload: A,
    options?: ScheduleOptions
  ) => Effect.Effect<TaskHandle, TaskRunnerError>
  readonly status: (id: string) => Effect.Effect<Option.Option<TaskStatus>>
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskRecord>>
  /** Cancels a task that has not finished; false when it already had. */
  readonly cancel: (id: string) => Effect.Effect<boolean>
  /** Tasks with `status`, most recently updated first. */
  readonly list: (options: { readonly status?: TaskStatus; readonly limit?: number }) => Effect.Effect<
    ReadonlyArray<TaskRecord>
  >
  /** Runs a failed (dead-letter) or cancelled task again with a fresh retry budget; finished phases stay done. */
  readonly replay: (id: string) => Effect.Effect<TaskHandle, TaskRunnerError>
  /**
   * Deletes finished tasks (succeeded, failed, cancelled) last updated before `olderThan`; returns how many. Their
   * idempotency keys are forgotten with them. Run by `layerRetention`.
   */
  readonly prune: (olderThan: Time.EpochMillis) => Effect.Effect<number, TaskRunnerError>
  readonly stats: Effect.Effect<{ readonly queued: number; readonly running: number; readonly live: number }>
  /**
   * True while fewer than `queueCapacity` tasks wait (ready, or waiting to retry): admission for work that will
   * schedule tasks, so a stalled destination turns new work away instead of growing the backlog.
   */
  readonly accepting: Effect.Effect<boolean>
  /** `queueCapacity`. */
  readonly capacity: number
}

export class TaskRunner extends Context.Tag("effect-agent-host/TaskRunner")<TaskRunner, TaskRunnerShape>() {}

export interface Options {
  /** Tasks running at once (default 64). */
  readonly concurrency?: number
  /** Tasks waiting (ready or to retry) before `accepting` turns false (default 10 000). */
  readonly queueCapacity?: number
  /** How long shutdown waits for running tasks before interrupting them (default 5 s). */
  readonly shutdownGrace?: Duration.DurationInput
  /** The retry schedule of handlers that set none (default `defaultRetry`). */
  readonly defaultRetry?: Schedule.Schedule<unknown, TaskFailure>
  /** Rows per group commit (default 2048). */
  readonly maxBatch?: number
}

export const defaults = {
  concurrency: 64,
  queueCapacity: 10_000,
  shutdownGrace: Duration.seconds(5),
  maxBatch: 2048
} as const

/**
 * Where rows live. `write` commits a batch of snapshots and the shared payloads they name atomically (a shared
 * payload already stored is kept as it is). A shared payload goes when no stored task names it any more.
 */
export interface TaskBackend {
  readonly write: (
    rows: ReadonlyArray<TaskRecord>,
    shared: ReadonlyArray<SharedPayload>
  ) => Effect.Effect<void, TaskRunnerError>
  readonly shared: (hash: string) => Effect.Effect<Option.Option<string>, TaskRunnerError>
  readonly unfinished: Effect.Effect<ReadonlyArray<TaskRecord>, TaskRunnerError>
  readonly get: (id: string) => Effect.Effect<Option.Option<TaskRecord>, TaskRunnerError>
  readonly findByKey: (key: string) => Effect.Effect<Option.Option<TaskRecord>, TaskRunnerError>
  readonly list: (
    status: TaskStatus | undefined,
    limit: number
  ) => Effect.Effect<ReadonlyArray<TaskRecord>, TaskRunnerError>
  /** Deletes finished rows with `updatedAt < olderThan`; returns how many. */
  readonly pruneFinished: (olderThan: Time.EpochMillis) => Effect.Effect<number, TaskRunnerError>
}

interface Handler {
  readonly definition: TaskDefinition<any, any>
  // Compiled once: building a codec per call dominates the hot path.
  readonly encode: (payload: unknown) => Effect.Effect<string, ParseResult.ParseError>
  readonly decode: (json: string) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly run: (payload: any, context: TaskContext) => Effect.Effect<void, TaskFailure>
  readonly retry: Schedule.Schedule<unknown, TaskFailure>
}

// A task that has not finished, as the engine tracks it.
interface Entry {
  row: TaskRecord
  cancelled: boolean
  fiber: Fiber.RuntimeFiber<void, TaskFailure> | undefined
  timer: Fiber.RuntimeFiber<void, never> | undefined
  /** The shared payload's JSON when this process scheduled the task (one string for every task sharing it). */
  shared: string | undefined
}

interface Write {
  /** Undefined for a flush marker: it completes once everything queued before it is committed. */
  readonly row: TaskRecord | undefined
  /** Written in the same transaction as `row`. */
  readonly shared?: SharedPayload | undefined
  readonly done: Deferred.Deferred<void, TaskRunnerError>
}

const isTerminal = (status: TaskStatus) => status === "succeeded" || status === "failed" || status === "cancelled"

// Task ids are handles (admin routes take them): they come from the CSPRNG.
const newId = issueId("task_")

/** The delay the schedule asks for after `attempts` failed attempts; none when it is exhausted. */
const delayAfter = (
  schedule: Schedule.Schedule<unknown, TaskFailure>,
  attempts: number,
  failure: TaskFailure,
  now: number
): Effect.Effect<Option.Option<number>> =>
  Effect.gen(function*() {
    let state = schedule.initial
    let start = now
    for (let i = 0; i < attempts; i++) {
      const [next, , decision] = yield* schedule.step(now, failure, state)
      if (decision._tag === "Done") return Option.none()
      state = next
      start = ScheduleIntervals.start(decision.intervals)
    }
    return Option.some(Math.max(0, start - now))
  })

const describeCause = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

export const make = (backend: TaskBackend, options: Options = {}) =>
  Effect.gen(function*() {
    const concurrency = options.concurrency ?? defaults.concurrency
    const grace = Duration.decode(options.shutdownGrace ?? defaults.shutdownGrace)
    const maxBatch = options.maxBatch ?? defaults.maxBatch
    const fallbackRetry = options.defaultRetry ?? defaultRetry
    const handlers = new Map<string, Handler>()
    const live = new Map<string, Entry>()
    const byKey = new Map<string, string>()
    const running = new Set<Entry>()
    const capacity = options.queueCapacity ?? defaults.queueCapacity
    // Unbounded (ids only; the rows are in `live` either way): scheduling never blocks a caller. `capacity` bounds
    // the backlog through `accepting` instead.
    const ready = yield* Queue.unbounded<string>()
    const writes = yield* Queue.unbounded<Write>()
    const fibers = yield* FiberSet.make<void, never>()
    let started = false
    let closing = false

    // Group commit: whatever queued up while the last batch was committing goes in the next one; the last
    // snapshot of a row wins.
    const writer = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const batch = yield* restore(Queue.takeBetween(writes, 1, maxBatch))
        const rows = new Map<string, TaskRecord>()
        const shared = new Map<string, SharedPayload>()
        for (const w of batch) {
          if (w.row !== undefined) rows.set(w.row.id, w.row)
          if (w.shared !== undefined) shared.set(w.shared.hash, w.shared)
        }
        const exit = rows.size === 0 ? Exit.void : yield* Effect.exit(backend.write([...rows.values()], [
          ...shared.values()
        ]))
        if (Exit.isFailure(exit)) yield* Effect.logError("task bookkeeping write failed", exit.cause)
        for (const w of batch) Deferred.unsafeDone(w.done, exit)
      })
    ).pipe(Effect.forever)
    const writerFiber = yield* Effect.forkDaemon(writer)

    const persist = (row: TaskRecord | undefined, shared?: SharedPayload): Effect.Effect<void, TaskRunnerError> =>
      Effect.flatMap(Deferred.make<void, TaskRunnerError>(), (done) =>
        Effect.zipRight(writes.offer({ row, shared, done }), Deferred.await(done)))

    const update = (entry: Entry, patch: Partial<TaskRecord>) =>
      Effect.map(Time.now, (now) => {
        entry.row = { ...entry.row, ...patch, updatedAt: now }
        return entry.row
      })

    const retryOf = (row: TaskRecord, handler: Handler): Schedule.Schedule<unknown, TaskFailure> => {
      if (row.retry === null) {
        return handler.retry
      }
      try {
        return retrySchedule(Schema.decodeUnknownSync(RetryPolicy)(JSON.parse(row.retry)))
      } catch {
        return handler.retry
      }
    }

    const finish = (entry: Entry, status: TaskStatus, lastError: string | null) =>
      Effect.gen(function*() {
        const row = yield* update(entry, { status, lastError })
        yield* persist(row).pipe(Effect.catchAll((e) =>
          Effect.logError("could not record task outcome", e.message)
        ))
        // Forgotten only once stored, so a lookup never sees an older stored state.
        live.delete(row.id)
        if (byKey.get(row.idempotencyKey) === row.id) byKey.delete(row.idempotencyKey)
      })

    const enqueueAt = (entry: Entry, at: Time.EpochMillis): Effect.Effect<void> =>
      Effect.gen(function*() {
        const now = yield* Time.now
        if (at <= now) {
          yield* ready.offer(entry.row.id)
          return
        }
        // Forked from a worker's uninterruptible region: the timer itself must stay interruptible.
        entry.timer = yield* FiberSet.run(
          fibers,
          Effect.interruptible(Effect.zipRight(
            Effect.sleep(Duration.millis(at - now)),
            Effect.suspend(() => {
              entry.timer = undefined
              return ready.offer(entry.row.id)
            })
          ))
        )
      })

    // One attempt. Bookkeeping is uninterruptible; only the handler's own fiber is interrupted (by cancel or
    // shutdown), and its exit is then recorded like any other.
    const attempt = (entry: Entry, handler: Handler) =>
      Effect.gen(function*() {
        const row = yield* update(entry, { status: "running", attempts: entry.row.attempts + 1 })
        // The attempt is consumed before the handler runs, so a task that crashes the process cannot loop.
        const recorded = yield* Effect.either(persist(row))
        if (recorded._tag === "Left") {
          // Not durable: leave it pending in memory and try later rather than run it unrecorded.
          yield* update(entry, { status: "pending", attempts: row.attempts - 1 })
          return yield* enqueueAt(entry, Time.plus(row.updatedAt, Duration.seconds(1)))
        }
        const decoded = yield* Effect.either(handler.decode(row.payload))
        if (decoded._tag === "Left") {
          return yield* finish(entry, "failed", `the payload does not decode: ${decoded.left.message}`)
        }
        let shared = entry.shared
        if (row.shared !== null && shared === undefined) {
          const loaded = yield* Effect.either(backend.shared(row.shared))
          if (loaded._tag === "Left") {
            yield* update(entry, { status: "pending", attempts: row.attempts - 1 })
            return yield* enqueueAt(entry, Time.plus(row.updatedAt, Duration.seconds(1)))
          }
          if (Option.isNone(loaded.right)) {
            return yield* finish(entry, "failed", `the task's shared payload ${row.shared} is missing`)
          }
          shared = loaded.right.value
        }
        const context: TaskContext = {
          id: row.id,
          idempotencyKey: row.idempotencyKey,
          attempt: row.attempts,
          phase: row.phase,
          completePhase: (phase) =>
            Effect.suspend(() =>
              phase <= entry.row.phase ? Effect.void : Effect.flatMap(update(entry, { phase }), (r) => persist(r))
            ).pipe(Effect.orDie),
          shared
        }
        const fiber = yield* Effect.fork(Effect.interruptible(
          handler.run(decoded.right, context).pipe(
            Effect.catchAllDefect((defect) =>
              Effect.fail<TaskFailure>({ retryable: true, message: `handler defect: ${describeCause(defect)}` })
            )
          )
        ))
        entry.fiber = fiber
        running.add(entry)
        const exit = yield* Fiber.await(fiber)
        running.delete(entry)
        entry.fiber = undefined
        if (Exit.isSuccess(exit)) return yield* finish(entry, "succeeded", null)
        const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        if (failure === undefined) {
          // Interrupted: by cancel, or by shutdown (the task stays pending and resumes on the next start).
          if (entry.cancelled) return yield* finish(entry, "cancelled", "cancelled while running")
          const pending = yield* update(entry, { status: "pending" })
          return yield* persist(pending).pipe(Effect.ignore)
        }
        if (!failure.retryable) {
          yield* Effect.logWarning("task failed terminally").pipe(
            Effect.annotateLogs({ task: row.id, name: row.name, error: failure.message })
          )
          return yield* finish(entry, "failed", failure.message)
        }
        const now = yield* Time.now
        const scheduled = yield* delayAfter(retryOf(row, handler), row.attempts, failure, now)
        if (Option.isNone(scheduled)) {
          yield* Effect.logWarning("task failed; retries exhausted").pipe(
            Effect.annotateLogs({ task: row.id, name: row.name, attempts: row.attempts, error: failure.message })
          )
          return yield* finish(entry, "failed", failure.message)
        }
        // A server-requested wait (429 retry-after) replaces the schedule's delay; the attempt budget stays.
        const delay = failure.retryAfterMillis !== undefined && failure.retryAfterMillis >= 0 ?
          failure.retryAfterMillis :
          scheduled.value
        const next = yield* update(entry, {
          status: "pending",
          nextAttemptAt: Time.plus(now, Duration.millis(delay)),
          lastError: failure.message
        })
        yield* persist(next).pipe(Effect.ignore)
        if (entry.cancelled) return yield* finish(entry, "cancelled", "cancelled")
        yield* enqueueAt(entry, next.nextAttemptAt)
      })

    const worker = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const id = yield* restore(ready.take)
        const entry = live.get(id)
        if (entry === undefined || entry.cancelled || entry.row.status !== "pending" || closing) return
        const handler = handlers.get(entry.row.name)
        if (handler === undefined) return yield* finish(entry, "failed", `no handler named "${entry.row.name}"`)
        yield* attempt(entry, handler)
      })
    ).pipe(Effect.forever)

    const track = (row: TaskRecord): Entry => {
      const entry: Entry = { row, cancelled: false, fiber: undefined, timer: undefined, shared: undefined }
      live.set(row.id, entry)
      byKey.set(row.idempotencyKey, row.id)
      return entry
    }

    const start = Effect.suspend(() => {
      if (started) return Effect.void
      started = true
      return Effect.gen(function*() {
        for (let i = 0; i < concurrency; i++) yield* FiberSet.run(fibers, worker)
        const unfinished = yield* backend.unfinished.pipe(
          Effect.catchAll((e) =>
            Effect.as(Effect.logError("could not load stored tasks", e.message), [] as ReadonlyArray<TaskRecord>)
          )
        )
        let resumed = 0
        for (const row of unfinished) {
          if (live.has(row.id)) continue
          track({ ...row, status: "pending" })
          resumed++
        }
        if (resumed > 0) yield* Effect.logInfo(`resuming ${resumed} stored task(s)`)
        // Stored tasks and those scheduled before start, in next-attempt order.
        const waiting = [...live.values()].sort((a, b) => a.row.nextAttemptAt - b.row.nextAttemptAt)
        yield* FiberSet.run(
          fibers,
          Effect.forEach(waiting, (e) => enqueueAt(e, e.row.nextAttemptAt), { discard: true })
        )
      })
    })

    const register: TaskRunnerShape["register"] = (definition, run, registerOptions) =>
      Effect.suspend(() => {
        if (started) {
          return Effect.fail(
            new TaskRunnerError({
              message: `cannot register task handler "${definition.name}": the runner has started`
            })
          )
        }
        if (handlers.has(definition.name)) {
          return Effect.fail(
            new TaskRunnerError({ message: `a task handler named "${definition.name}" is already registered` })
          )
        }
        const codec = Schema.parseJson(definition.payload)
        handlers.set(definition.name, {
          definition,
          encode: Schema.encode(codec) as Handler["encode"],
          decode: Schema.decodeUnknown(codec) as Handler["decode"],
          run,
          retry: registerOptions?.retry ?? fallbackRetry
        })
        return Effect.void
      })

    const handleOf = (row: TaskRecord): TaskHandle => ({
      id: row.id,
      name: row.name,
      idempotencyKey: row.idempotencyKey
    })

    const schedule: TaskRunnerShape["schedule"] = (definition, payload, scheduleOptions) =>
      Effect.gen(function*() {
        if (closing) {
          return yield* new TaskRunnerError({ message: "the task runner is shutting down; task not accepted" })
        }
        const handler = handlers.get(definition.name)
        if (handler === undefined) {
          return yield* new TaskRunnerError({ message: `no task handler named "${definition.name}" is registered` })
        }
        const key = scheduleOptions?.idempotencyKey
        if (key !== undefined) {
          const liveId = byKey.get(key)
          const existing = liveId !== undefined ? live.get(liveId)?.row : undefined
          if (existing !== undefined) return handleOf(existing)
          const stored = yield* backend.findByKey(key)
          if (Option.isSome(stored)) return handleOf(stored.value)
          // Checked again: another fiber may have scheduled the key while we looked it up.
          const raced = byKey.get(key)
          if (raced !== undefined) return { id: raced, name: definition.name, idempotencyKey: key }
        }
        const encoded = yield* handler.encode(payload).pipe(
          Effect.mapError((e) =>
            new TaskRunnerError({ message: `the payload of task "${definition.name}" does not encode: ${e.message}` })
          )
        )
        const id = yield* newId
        const now = yield* Time.now
        const delay = scheduleOptions?.delay ?? Duration.zero
        const row: TaskRecord = {
          id,
          name: definition.name,
          idempotencyKey: key ?? id,
          status: "pending",
          attempts: 0,
          phase: 0,
          nextAttemptAt: Time.plus(now, delay),
          lastError: null,
          payload: encoded,
          retry: scheduleOptions?.retry === undefined ? null : JSON.stringify(scheduleOptions.retry),
          shared: scheduleOptions?.shared?.hash ?? null,
          createdAt: now,
          updatedAt: now
        }
        const entry = track(row)
        entry.shared = scheduleOptions?.shared?.json
        // The shared payload is committed with the row, in one transaction: a stored task never names a missing one.
        yield* persist(row, scheduleOptions?.shared).pipe(Effect.tapError(() =>
          Effect.sync(() => {
            live.delete(id)
            byKey.delete(row.idempotencyKey)
          })
        ))
        if (started) yield* enqueueAt(entry, row.nextAttemptAt)
        else yield* Effect.logDebug("task scheduled before start; it runs once the runner starts")
        return handleOf(row)
      })

    const get = (id: string) =>
      Effect.suspend(() => {
        const entry = live.get(id)
        if (entry !== undefined) return Effect.succeed(Option.some(entry.row))
        return backend.get(id).pipe(Effect.orElseSucceed(() => Option.none<TaskRecord>()))
      })

    const cancel = (id: string) =>
      Effect.gen(function*() {
        const entry = live.get(id)
        if (entry === undefined || entry.cancelled) return false
        entry.cancelled = true
        if (entry.timer !== undefined) yield* Fiber.interrupt(entry.timer)
        if (entry.fiber !== undefined) {
          yield* Fiber.interrupt(entry.fiber)
          return true
        }
        yield* finish(entry, "cancelled", "cancelled")
        return true
      })

    const replay = (id: string) =>
      Effect.gen(function*() {
        if (closing) return yield* new TaskRunnerError({ message: "the task runner is shutting down" })
        const stored = yield* get(id)
        if (Option.isNone(stored)) return yield* new TaskRunnerError({ message: `no task with id ${id}` })
        const row = stored.value
        if (row.status !== "failed" && row.status !== "cancelled") {
          return yield* new TaskRunnerError({
            message: `task ${id} is ${row.status}; only failed or cancelled tasks can be replayed`
          })
        }
        const now = yield* Time.now
        const entry = track({ ...row, status: "pending", attempts: 0, nextAttemptAt: now, updatedAt: now })
        yield* persist(entry.row)
        if (started) yield* enqueueAt(entry, now)
        yield* Effect.logInfo("task replayed").pipe(Effect.annotateLogs({ task: id, name: row.name }))
        return handleOf(entry.row)
      })

    const list: TaskRunnerShape["list"] = ({ limit, status }) =>
      // Flushed first, so the listing reflects every change made before the call.
      persist(undefined).pipe(
        Effect.zipRight(backend.list(status, Math.max(1, Math.min(limit ?? 100, 1000)))),
        Effect.map((rows) => rows.map((row) => live.get(row.id)?.row ?? row)),
        Effect.orElseSucceed(() => [])
      )

    // Shutdown: stop taking tasks, let running ones finish within the grace period, interrupt the rest
    // (they stay pending), then flush the bookkeeping.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        const inFlight = [...running].flatMap((e) => e.fiber === undefined ? [] : [e.fiber])
        if (inFlight.length > 0) {
          // Finalizers are uninterruptible; the wait itself must not be, or the timeout could not end it.
          const drained = yield* Effect.interruptible(Fiber.awaitAll(inFlight)).pipe(
            Effect.timeout(grace),
            Effect.option
          )
          if (Option.isNone(drained)) {
            const left = [...running].flatMap((e) => e.fiber === undefined ? [] : [e.fiber])
            yield* Effect.logWarning(`shutdown grace elapsed; interrupting ${left.length} running task(s)`)
            yield* Fiber.interruptAll(left)
          }
        }
        yield* FiberSet.clear(fibers)
        // Whatever is still queued for the writer is committed before the runner goes away.
        yield* persist(undefined).pipe(Effect.ignore)
        yield* Fiber.interrupt(writerFiber)
      })
    )

    return TaskRunner.of({
      register,
      start,
      schedule,
      status: (id) => Effect.map(get(id), Option.map((row) => row.status)),
      get,
      cancel,
      list,
      replay,
      // Flushed first, so a task that just finished is judged by its committed row.
      prune: (olderThan) => Effect.zipRight(persist(undefined), backend.pruneFinished(olderThan)),
      stats: Effect.map(ready.size, (queued) => ({ queued, running: running.size, live: live.size })),
      accepting: Effect.sync(() => live.size - running.size < capacity),
      capacity
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// Backends

/** Rows in process; finished rows beyond `keepFinished` are forgotten oldest first. */
export const memoryBackend = (keepFinished = 10_000): TaskBackend => {
  const rows = new Map<string, TaskRecord>()
  const finished: Array<string> = []
  // Shared payloads with how many stored rows name them.
  const shared = new Map<string, { readonly json: string; refs: number }>()
  return {
    write: (batch, payloads) =>
      Effect.sync(() => {
        for (const payload of payloads) {
          if (!shared.has(payload.hash)) shared.set(payload.hash, { json: payload.json, refs: 0 })
        }
        for (const row of batch) {
          const before = rows.get(row.id)
          rows.set(row.id, row)
          if (before === undefined && row.shared !== null) {
            const entry = shared.get(row.shared)
            if (entry !== undefined) entry.refs++
          }
          if (isTerminal(row.status) && (before === undefined || !isTerminal(before.status))) finished.push(row.id)
        }
        for (const payload of payloads) {
          if (shared.get(payload.hash)?.refs === 0) shared.delete(payload.hash)
        }
        while (finished.length > keepFinished) {
          const id = finished.shift()!
          const row = rows.get(id)
          if (row !== undefined && isTerminal(row.status)) {
            rows.delete(id)
            const entry = row.shared === null ? undefined : shared.get(row.shared)
            if (entry !== undefined && --entry.refs <= 0) shared.delete(row.shared!)
          }
        }
      }),
    shared: (hash) => Effect.sync(() => Option.map(Option.fromNullable(shared.get(hash)), (entry) => entry.json)),
    unfinished: Effect.sync(() => [...rows.values()].filter((r) => !isTerminal(r.status))),
    get: (id) => Effect.sync(() => Option.fromNullable(rows.get(id))),
    findByKey: (key) =>
      Effect.sync(() => {
        for (const row of rows.values()) if (row.idempotencyKey === key) return Option.some(row)
        return Option.none()
      }),
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
        for (const [id, row] of rows) {
          if (isTerminal(row.status) && row.updatedAt < olderThan) {
            rows.delete(id)
            const entry = row.shared === null ? undefined : shared.get(row.shared)
            if (entry !== undefined && --entry.refs <= 0) shared.delete(row.shared!)
            removed++
          }
        }
        if (removed > 0) finished.splice(0, finished.length, ...finished.filter((id) => rows.has(id)))
        return removed
      })
  }
}

export const TABLE = "agent_host_tasks"
/** Shared payloads (`hash`, `body`), each stored once however many tasks name it. */
export const PAYLOADS_TABLE = "agent_host_task_payloads"
export const MIGRATIONS_TABLE = "agent_host_task_migrations"

const migrations = Migrator.fromRecord({
  "1_create_tasks": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql`CREATE TABLE IF NOT EXISTS ${sql(TABLE)} (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        phase INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        payload TEXT NOT NULL,
        retry TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_key ON ${sql(TABLE)} (idempotency_key)`,
      sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_status ON ${sql(TABLE)} (status, updated_at)`
    ], { discard: true })),
  // A reply pushed to many destinations is stored once: tasks name it by hash. Whatever deletes tasks (retention)
  // deletes a payload with the last task that names it (the trigger), so nothing else has to know about them.
  "2_shared_payloads": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN shared TEXT`,
      sql`CREATE TABLE IF NOT EXISTS ${sql(PAYLOADS_TABLE)} (
        hash TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
      )`,
      sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_shared ON ${sql(TABLE)} (shared) WHERE shared IS NOT NULL`,
      sql.unsafe(`CREATE TRIGGER IF NOT EXISTS agent_host_task_payloads_release AFTER DELETE ON ${TABLE}
        WHEN old.shared IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${TABLE} WHERE shared = old.shared)
        BEGIN DELETE FROM ${PAYLOADS_TABLE} WHERE hash = old.shared; END`)
    ], { discard: true }))
})

interface SqlRow {
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

const fromSql = (row: SqlRow): TaskRecord => ({
  id: row.id,
  name: row.name,
  idempotencyKey: row.idempotency_key,
  status: Schema.is(TaskStatus)(row.status) ? row.status : "failed",
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

const toSql = (row: TaskRecord): SqlRow => ({
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

// Fixed statement sizes, so the client's prepared-statement cache holds a handful of texts instead of preparing
// a new multi-row statement for every batch size (preparing dominated the write path).
const CHUNKS = [256, 64, 16, 4, 1] as const

/** Rows in a SQLite table (migrations tracked in their own table). */
export const sqliteBackend = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrator.make({})({ loader: migrations, table: MIGRATIONS_TABLE })
  const sqlError = (what: string) => (e: { readonly message: string }) =>
    new TaskRunnerError({ message: `task store ${what} failed: ${e.message}` })
  const upsert = (rows: ReadonlyArray<SqlRow>) =>
    sql`INSERT INTO ${sql(TABLE)} ${sql.insert(rows as unknown as ReadonlyArray<Record<string, unknown>>)}
      ON CONFLICT(id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
      phase = excluded.phase, next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
      retry = excluded.retry, updated_at = excluded.updated_at`
  const backend: TaskBackend = {
    write: (batch, shared) => {
      const rows = batch.map(toSql)
      const statements: Array<Effect.Effect<unknown, unknown>> = shared.length === 0 ? [] : [
        sql`INSERT INTO ${sql(PAYLOADS_TABLE)} ${
          sql.insert(shared.map((p) => ({ hash: p.hash, body: p.json, created_at: batch[0]?.updatedAt ?? 0 })))
        } ON CONFLICT(hash) DO NOTHING`
      ]
      let i = 0
      for (const size of CHUNKS) {
        while (rows.length - i >= size) {
          statements.push(upsert(rows.slice(i, i + size)))
          i += size
        }
      }
      const all = Effect.all(statements, { discard: true })
      return (statements.length === 1 ? all : sql.withTransaction(all)).pipe(
        Effect.mapError((e) => sqlError("write")({ message: describeCause(e) }))
      )
    },
    shared: (hash) =>
      sql<{ readonly body: string }>`SELECT body FROM ${sql(PAYLOADS_TABLE)} WHERE hash = ${hash}`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => row.body)),
        Effect.mapError(sqlError("read"))
      ),
    unfinished: sql<SqlRow>`SELECT * FROM ${sql(TABLE)} WHERE status IN ('pending', 'running')
      ORDER BY next_attempt_at`.pipe(Effect.map((rows) => rows.map(fromSql)), Effect.mapError(sqlError("load"))),
    get: (id) =>
      sql<SqlRow>`SELECT * FROM ${sql(TABLE)} WHERE id = ${id}`.pipe(
        Effect.map((rows) => rows[0] === undefined ? Option.none() : Option.some(fromSql(rows[0]))),
        Effect.mapError(sqlError("read"))
      ),
    findByKey: (key) =>
      sql<SqlRow>`SELECT * FROM ${sql(TABLE)} WHERE idempotency_key = ${key} ORDER BY created_at LIMIT 1`.pipe(
        Effect.map((rows) => rows[0] === undefined ? Option.none() : Option.some(fromSql(rows[0]))),
        Effect.mapError(sqlError("read"))
      ),
    list: (status, limit) =>
      (status === undefined ?
        sql<SqlRow>`SELECT * FROM ${sql(TABLE)} ORDER BY updated_at DESC LIMIT ${limit}` :
        sql<SqlRow>`SELECT * FROM ${sql(TABLE)} WHERE status = ${status} ORDER BY updated_at DESC LIMIT ${limit}`).pipe(
          Effect.map((rows) => rows.map(fromSql)),
          Effect.mapError(sqlError("list"))
        ),
    pruneFinished: (olderThan) =>
      sql<{ readonly id: string }>`DELETE FROM ${sql(TABLE)}
        WHERE status IN ('succeeded', 'failed', 'cancelled') AND updated_at < ${olderThan} RETURNING id`.pipe(
        Effect.map((rows) => rows.length),
        Effect.mapError(sqlError("prune"))
      )
  }
  return backend
})

// ---------------------------------------------------------------------------------------------------------------
// Layers

export const layerMemory = (options: Options = {}): Layer.Layer<TaskRunner> =>
  Layer.scoped(TaskRunner, make(memoryBackend(), options))

/** Durable: rows in the `SqlClient`'s database. */
export const layerSqlite = (
  options: Options = {}
): Layer.Layer<TaskRunner, TaskRunnerError, SqlClient.SqlClient> =>
  Layer.scoped(
    TaskRunner,
    Effect.flatMap(
      sqliteBackend.pipe(
        Effect.mapError((e) => new TaskRunnerError({ message: `cannot prepare the task table: ${e.message}` }))
      ),
      (backend) => make(backend, options)
    )
  )

/**
 * Retention: every `AGENT_HOST_PRUNE_INTERVAL`, deletes finished tasks last updated more than
 * `AGENT_HOST_TASK_RETENTION` ago (`Persistence.pruneEvery`). Pending and running tasks are never pruned.
 */
export const layerRetention: Layer.Layer<never, never, TaskRunner | Persistence.Persistence> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const runner = yield* TaskRunner
    const settings = yield* Persistence.Persistence
    yield* Persistence.pruneEvery({
      name: "tasks",
      maxAge: settings.taskRetention,
      interval: settings.pruneInterval,
      prune: runner.prune
    })
  })
)

/** Runner options from the environment (AGENT_HOST_TASK_CONCURRENCY, AGENT_HOST_TASK_QUEUE, ...). */
export const optionsConfig: Config.Config<Options> = Config.all({
  concurrency: Config.integer("AGENT_HOST_TASK_CONCURRENCY").pipe(Config.withDefault(defaults.concurrency)),
  queueCapacity: Config.integer("AGENT_HOST_TASK_QUEUE").pipe(Config.withDefault(defaults.queueCapacity)),
  shutdownGrace: Config.duration("AGENT_HOST_TASK_SHUTDOWN_GRACE").pipe(
    Config.withDefault(defaults.shutdownGrace)
  )
})
