/**
 * The durable task runner: named handlers, Schema-encoded JSON payloads, retries driven by a `Schedule`,
 * idempotency keys, a phase cursor per task, dead letters and replay, bounded concurrency, a capacity for waiting
 * tasks that callers check before taking on work (`accepting`), and a drain on shutdown.
 *
 * The rows live in the `TaskStore` (`TaskStore.ts`), which commits the state changes of many tasks in one
 * transaction. What is durable when: a scheduled task is committed before `schedule` returns its handle; an
 * attempt is committed (as `running`, its attempt counted) before its handler runs, so a task that crashes the
 * process cannot loop; a phase is committed before `completePhase` returns; an outcome is committed before the
 * worker takes its next task.
 *
 * A claimer takes ready tasks from one queue and marks them running in batches (one commit per batch); the
 * attempts run on `concurrency` worker fibers. Cancelling a running task interrupts its worker, which is then
 * retired and replaced, so the interruption never reaches another task's handler.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { ParseResult } from "effect"
import {
  Cause,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberSet,
  Layer,
  Metric,
  Option,
  Schedule,
  ScheduleIntervals,
  Schema
} from "effect"
import type { PushFailed } from "../domain/Errors.js"
import { randomId } from "../domain/Ids.js"
import * as Time from "../domain/Time.js"
import * as Persistence from "../state/Persistence.js"
import type * as StateWriter from "../state/sqlite/StateWriter.js"
import type { SharedPayload, TaskRecord, TaskStatus } from "./TaskStore.js"
import * as TaskStore from "./TaskStore.js"

export { sharedPayload, TaskStatus } from "./TaskStore.js"
export type { SharedPayload, TaskRecord } from "./TaskStore.js"

export interface TaskHandle {
  readonly id: string
  readonly name: string
  readonly idempotencyKey: string
}

/**
 * Why an attempt failed: retryable (after a server-requested wait, if any) or terminal. A handler fails with a
 * `TaskFailed`, or passes on a channel's `PushFailed` as it is.
 */
export class TaskFailed extends Schema.TaggedError<TaskFailed>()("TaskFailed", {
  retryable: Schema.Boolean,
  /** Replaces the schedule's next delay (a 429's retry-after); the attempt budget still applies. */
  retryAfter: Schema.optional(Schema.DurationFromMillis),
  message: Schema.String
}) {
  static retryable(message: string, retryAfter?: Duration.DurationInput): TaskFailed {
    return new TaskFailed(
      retryAfter === undefined ?
        { retryable: true, message } :
        { retryable: true, message, retryAfter: Duration.decode(retryAfter) }
    )
  }
  static terminal(message: string): TaskFailed {
    return new TaskFailed({ retryable: false, message })
  }
}

export type TaskFailure = TaskFailed | PushFailed

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
   * Persists the task, then queues it. Never waits for room: a task is accepted past `queueCapacity` (check
   * `accepting` before taking on work that will schedule tasks); past twice that (at least `queueCapacity` +
   * 1000) waiting tasks, it is refused, so a caller that ignores `accepting` cannot grow the backlog without bound.
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

/** Task attempts that failed (retried or not), by task `name`. */
export const attemptsFailedTotal = Metric.counter("agent_host_task_attempts_failed_total", {
  description: "task attempts that failed, retried or not, by task name",
  incremental: true
})

/** Tasks that became dead letters (failed terminally or out of retries), by task `name`. */
export const deadTotal = Metric.counter("agent_host_tasks_dead_total", {
  description: "tasks that failed for good (dead letters, replayable), by task name",
  incremental: true
})

export class TaskRunner extends Context.Tag("effect-agent-host/TaskRunner")<TaskRunner, TaskRunnerShape>() {}

export interface Options extends TaskStore.Options {
  /** Tasks running at once (default 64). */
  readonly concurrency?: number
  /** Tasks waiting (ready or to retry) before `accepting` turns false (default 10 000). */
  readonly queueCapacity?: number
  /** How long shutdown waits for running tasks before interrupting them (default 5 s). */
  readonly shutdownGrace?: Duration.DurationInput
  /** The retry schedule of handlers that set none (default `defaultRetry`). */
  readonly defaultRetry?: Schedule.Schedule<unknown, TaskFailure>
}

export const defaults = {
  concurrency: 64,
  queueCapacity: 10_000,
  shutdownGrace: Duration.seconds(5),
  maxBatch: TaskStore.defaults.maxBatch
} as const

interface Handler {
  // Compiled once, synchronous: an Effect per encode or decode showed in the profile.
  readonly encode: (payload: unknown) => Either.Either<string, ParseResult.ParseError>
  /** Fails with why the stored JSON is not a payload. */
  readonly decode: (json: string) => Either.Either<unknown, string>
  readonly run: (payload: any, context: TaskContext) => Effect.Effect<void, TaskFailure>
  readonly retry: Schedule.Schedule<unknown, TaskFailure>
}

/** A worker fiber. `retiring` is set before anything interrupts it: it then stops after its attempt. */
interface Worker {
  fiber: Fiber.RuntimeFiber<void, never> | undefined
  retiring: boolean
  /** The attempt in progress: its task and handler. */
  entry: Entry | undefined
  handler: Handler | undefined
  /** Runs the handler interruptibly (the worker's loop is not). */
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Set while the worker waits for a claimed task: hands it one. */
  wake: ((exit: Exit.Exit<Entry>) => void) | undefined
  /** The task the worker claimed in the commit of its last outcome: its next attempt. */
  next: Entry | undefined
  /**
   * What the worker does once an attempt is recorded (its next task, or the wait for one), made once per worker.
   * An attempt ends with it rather than returning to a frame of the loop: one frame and step fewer per task.
   */
  continue: Effect.Effect<void>
  /** Records the handler's exit; made once per worker. */
  outcome: {
    readonly onSuccess: () => Effect.Effect<void>
    readonly onFailure: (cause: Cause.Cause<TaskFailure>) => Effect.Effect<void>
  }
}

const identityRestore = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect
const noOutcome: Worker["outcome"] = { onSuccess: () => Effect.void, onFailure: () => Effect.void }

/** No payload in memory: decode the stored one. */
const notDecoded: unique symbol = Symbol("notDecoded")

// A task that has not finished, as the engine tracks it.
interface Entry {
  row: TaskRecord
  /** The payload as scheduled in this process (no decode needed), or `notDecoded` for a stored task. */
  payload: unknown
  /** The shared payload's JSON when known in process (one string for every task sharing it). */
  shared: string | undefined
  /** False until the schedule that made the entry is committed. */
  stored: boolean
  /** Other schedules of the same key while the first is being committed wait for its answer here. */
  storing: Deferred.Deferred<TaskHandle, TaskRunnerError> | undefined
  cancelled: boolean
  /** The worker running the task's handler, while it does. */
  worker: Worker | undefined
  timer: Fiber.RuntimeFiber<void, never> | undefined
}

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

/**
 * A FIFO without the fiber machinery of `Queue`, whose `take` on an empty queue allocates a Deferred: that showed
 * in the profile, once per task. Waiting is done by the callers (see `make`).
 */
class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(item: A): void {
    this.items.push(item)
  }
  shift(): A | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

const compile = (definition: TaskDefinition<any, any>) => {
  const encode = Schema.encodeEither(definition.payload)
  const decode = Schema.decodeUnknownEither(definition.payload)
  return {
    encode: (payload: unknown) => Either.map(encode(payload), (encoded) => JSON.stringify(encoded)),
    decode: (json: string): Either.Either<unknown, string> => {
      let parsed: unknown
      try {
        parsed = JSON.parse(json)
      } catch (cause) {
        return Either.left(describeCause(cause))
      }
      return Either.mapLeft(decode(parsed), (e) => e.message)
    }
  }
}

/** The engine, on the `TaskStore` in context. */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const clock = yield* Effect.clock
    const concurrency = Math.max(1, options.concurrency ?? defaults.concurrency)
    const grace = Duration.decode(options.shutdownGrace ?? defaults.shutdownGrace)
    const fallbackRetry = options.defaultRetry ?? defaultRetry
    const capacity = options.queueCapacity ?? defaults.queueCapacity
    const hardLimit = Math.max(2 * capacity, capacity + 1_000)
    const handlers = new Map<string, Handler>()
    const live = new Map<string, Entry>()
    const byKey = new Map<string, Entry>()
    // Tasks whose handler runs (each has `entry.worker`).
    let running = 0
    // Ready tasks, in order. Unbounded as a queue, bounded by `hardLimit` through `schedule` (live entries only).
    const ready = new Fifo<Entry>()
    // Claimed tasks (their attempt committed) waiting for a worker, and the workers waiting for one.
    const claimed = new Fifo<Entry>()
    const idle = new Fifo<Worker>()
    // Tasks the claimer is committing; workers started and not retired. Workers start
    // on demand, when claimed tasks wait and fewer than `concurrency` run: a runner with no work holds none.
    let claiming = 0
    let workers = 0
    // Tasks claimed by workers with their last outcome, not yet started.
    let claimedAhead = 0
    // Set while the claimer waits for ready tasks or for room.
    let wakeClaimer: (() => void) | undefined
    // The claimer claims only for idle workers and workers it may start: a busy worker claims its own next task
    // in the commit of its outcome.
    const claimRoom = () => idle.length + concurrency - workers - claimed.length
    const poke = () => {
      if (wakeClaimer !== undefined && (claimRoom() > 0 || (claimed.length > 0 && workers < concurrency))) {
        wakeClaimer()
      }
    }
    // The claimer, workers and retry timers.
    const fibers = yield* FiberSet.make<void, never>()
    // Task ids are handles (admin routes take them): from the CSPRNG.
    const newId = (now: number) => `task_${now.toString(16).padStart(12, "0")}${randomId()}`
    let started = false
    let closing = false

    const track = (row: TaskRecord, payload: unknown, shared: string | undefined): Entry => {
      const entry: Entry = {
        row,
        payload,
        shared,
        stored: true,
        storing: undefined,
        cancelled: false,
        worker: undefined,
        timer: undefined
      }
      live.set(row.id, entry)
      // A task scheduled without a key has its id as its key: nobody schedules by it, the store dedupes it anyway.
      if (row.idempotencyKey !== row.id) byKey.set(row.idempotencyKey, entry)
      return entry
    }

    const forget = (entry: Entry) => {
      if (live.get(entry.row.id) === entry) live.delete(entry.row.id)
      if (byKey.get(entry.row.idempotencyKey) === entry) byKey.delete(entry.row.idempotencyKey)
    }

    const update = (entry: Entry, patch: Partial<TaskRecord>) =>
      Effect.map(Time.now, (now) => {
        entry.row = { ...entry.row, ...patch, updatedAt: now }
        return entry.row
      })

    const retryOf = (row: TaskRecord, handler: Handler): Schedule.Schedule<unknown, TaskFailure> => {
      if (row.retry === null) return handler.retry
      try {
        return retrySchedule(Schema.decodeUnknownSync(RetryPolicy)(JSON.parse(row.retry)))
      } catch {
        return handler.retry
      }
    }

    // The outcome is committed before the worker takes another task, so at most `concurrency` tasks are ever
    // delivered but not recorded (what a crash repeats). The entry is forgotten once the outcome is stored, so a
    // lookup never sees an older stored state.
    const finish = (entry: Entry, status: TaskStatus, lastError: string | null) =>
      Effect.clockWith((clock) => finishAt(entry, status, lastError, clock.unsafeCurrentTimeMillis()))

    // One wait, resumed by the group commit's callback: the path of every task that succeeds.
    const finishAt = (entry: Entry, status: TaskStatus, lastError: string | null, now: number): Effect.Effect<void> =>
      Effect.async((resume) => {
        const row = { ...entry.row, status, lastError, updatedAt: Time.fromMillis(now) }
        entry.row = row
        // Only status, last error and time change (phases and retry times were committed when made): tasks that
        // finish alike in the same millisecond are written together.
        store.submitTransition(row, (exit) => {
          forget(entry)
          resume(Exit.isSuccess(exit) ? Effect.void : Effect.logError("could not record a task's outcome", exit.cause))
        })
      })

    // The next ready task, marked running with its attempt counted (not yet committed).
    const claimReady = (now: Time.EpochMillis): Entry | undefined => {
      for (;;) {
        const entry = ready.shift()
        if (entry === undefined) return undefined
        if (!runnable(entry)) continue
        entry.row = { ...entry.row, status: "running", attempts: entry.row.attempts + 1, updatedAt: now }
        return entry
      }
    }

    // A success, and the worker's next task claimed in the same commit: the worker waits once per task, and needs
    // neither the claimer nor a hand-over. The claim is committed before its handler runs, the outcome before
    // the worker takes it, as with a task from the claimer.
    const succeeded = (entry: Entry, worker: Worker, millis: number): Effect.Effect<void> =>
      Effect.async((resume) => {
        const now = Time.fromMillis(millis)
        const row = { ...entry.row, status: "succeeded" as const, lastError: null, updatedAt: now }
        entry.row = row
        // A task the claimer claimed already waits, or the worker stops: claim nothing.
        const next = claimed.length > 0 || worker.retiring || closing ? undefined : claimReady(now)
        if (next === undefined) {
          return store.submitTransition(row, (exit) => {
            forget(entry)
            resume(
              Exit.isSuccess(exit) ?
                worker.continue :
                Effect.zipRight(Effect.logError("could not record a task's outcome", exit.cause), worker.continue)
            )
          })
        }
        claimedAhead++
        store.submitTransitions([row, next.row], (exit) => {
          forget(entry)
          claimedAhead--
          if (Exit.isSuccess(exit)) {
            worker.next = next
            return resume(worker.continue)
          }
          // Not durable: leave the claimed task pending in memory and try later rather than run it unrecorded.
          resume(Effect.zipRight(
            Effect.zipRight(
              Effect.logError("could not record a task's outcome", exit.cause),
              retryLater(next, next.row)
            ),
            worker.continue
          ))
        })
      })

    const enqueue = (entry: Entry) => {
      ready.push(entry)
      poke()
    }

    const enqueueAt = (entry: Entry, at: Time.EpochMillis): Effect.Effect<void> =>
      Effect.flatMap(Time.now, (now) => {
        if (at <= now) return Effect.sync(() => enqueue(entry))
        // Forked from an uninterruptible region: the timer itself must stay interruptible.
        return Effect.map(
          FiberSet.run(
            fibers,
            Effect.interruptible(Effect.zipRight(
              Effect.sleep(Duration.millis(at - now)),
              Effect.sync(() => {
                entry.timer = undefined
                enqueue(entry)
              })
            ))
          ),
          (timer) => {
            entry.timer = timer
          }
        )
      })

    const retryLater = (entry: Entry, row: TaskRecord) =>
      Effect.zipRight(
        update(entry, { status: "pending", attempts: row.attempts - 1 }),
        enqueueAt(entry, Time.plus(row.updatedAt, Duration.seconds(1)))
      )

    const runnable = (entry: Entry) =>
      !entry.cancelled && entry.row.status === "pending" && !closing && live.get(entry.row.id) === entry

    // The outcome of an attempt that did not succeed: interrupted, terminal, or retried on the schedule.
    const failed = (entry: Entry, handler: Handler, exit: Exit.Failure<void, TaskFailure>) =>
      Effect.gen(function*() {
        const row = entry.row
        const defect = Cause.dieOption(exit.cause)
        const failure = Option.getOrUndefined(Cause.failureOption(exit.cause)) ?? (Option.isSome(defect) ?
          TaskFailed.retryable(`handler defect: ${describeCause(defect.value)}`) :
          undefined)
        if (failure === undefined) {
          // Interrupted: by cancel, or by shutdown (the task stays pending and resumes on the next start).
          if (entry.cancelled) return yield* finish(entry, "cancelled", "cancelled while running")
          return yield* Effect.flatMap(update(entry, { status: "pending" }), (pending) => store.updateLater(pending))
        }
        yield* Metric.increment(Metric.tagged(attemptsFailedTotal, "name", row.name))
        if (!failure.retryable) {
          yield* Metric.increment(Metric.tagged(deadTotal, "name", row.name))
          yield* Effect.logWarning("task failed terminally").pipe(
            Effect.annotateLogs({ task: row.id, name: row.name, error: failure.message })
          )
          return yield* finish(entry, "failed", failure.message)
        }
        const now = yield* Time.now
        const scheduled = yield* delayAfter(retryOf(row, handler), row.attempts, failure, now)
        if (Option.isNone(scheduled)) {
          yield* Metric.increment(Metric.tagged(deadTotal, "name", row.name))
          yield* Effect.logWarning("task failed; retries exhausted").pipe(
            Effect.annotateLogs({ task: row.id, name: row.name, attempts: row.attempts, error: failure.message })
          )
          return yield* finish(entry, "failed", failure.message)
        }
        // A server-requested wait (429 retry-after) replaces the schedule's delay; the attempt budget stays.
        const delay = failure.retryAfter === undefined ? scheduled.value : Duration.toMillis(failure.retryAfter)
        const next = yield* update(entry, {
          status: "pending",
          nextAttemptAt: Time.plus(now, Duration.millis(delay)),
          lastError: failure.message
        })
        yield* Effect.ignore(store.update(next))
        if (entry.cancelled) return yield* finish(entry, "cancelled", "cancelled")
        yield* enqueueAt(entry, next.nextAttemptAt)
      })

    // The payload and shared payload of a stored task, read once (a task scheduled in this process has both).
    // Undefined when the attempt can start at once (the usual case: no effect to run first).
    const prepare = (entry: Entry, handler: Handler): Effect.Effect<boolean> | undefined => {
      const row = entry.row
      if (entry.payload === notDecoded) {
        const decoded = handler.decode(row.payload)
        if (decoded._tag === "Left") {
          return Effect.as(finish(entry, "failed", `the payload does not decode: ${decoded.left}`), false)
        }
        entry.payload = decoded.right
      }
      if (row.shared === null || entry.shared !== undefined) return undefined
      return Effect.flatMap(Effect.either(store.shared(row.shared)), (loaded) => {
        if (loaded._tag === "Left") return Effect.as(retryLater(entry, row), false)
        if (Option.isNone(loaded.right)) {
          return Effect.as(finish(entry, "failed", `the task's shared payload ${row.shared} is missing`), false)
        }
        entry.shared = loaded.right.value
        return Effect.succeed(true)
      })
    }

    // One attempt, on `worker`'s fiber, in its uninterruptible region: only the handler runs interruptibly
    // (`restore`), and its exit is then recorded like any other. Written without a generator and with as few
    // steps as it can: this is the path every task takes.
    const run = (entry: Entry, handler: Handler, worker: Worker): Effect.Effect<void> => {
      // Cancelled while its shared payload was read (already finished).
      if (entry.cancelled) return worker.continue
      const row = entry.row
      const context: TaskContext = {
        id: row.id,
        idempotencyKey: row.idempotencyKey,
        attempt: row.attempts,
        phase: row.phase,
        completePhase: (phase) =>
          Effect.suspend(() =>
            phase <= entry.row.phase ? Effect.void : Effect.flatMap(update(entry, { phase }), store.update)
          ).pipe(Effect.orDie),
        shared: entry.shared
      }
      entry.worker = worker
      running++
      worker.entry = entry
      worker.handler = handler
      return Effect.matchCauseEffect(worker.restore(handler.run(entry.payload, context)), worker.outcome)
    }

    const attempt = (entry: Entry, worker: Worker): Effect.Effect<void> => {
      // Cancelled while claimed (then already finished), or shutting down (put back by the finalizer).
      if (entry.cancelled || entry.row.status !== "running" || closing || live.get(entry.row.id) !== entry) {
        return worker.continue
      }
      const handler = handlers.get(entry.row.name)
      if (handler === undefined) {
        return Effect.zipRight(finish(entry, "failed", `no handler named "${entry.row.name}"`), worker.continue)
      }
      const prepared = prepare(entry, handler)
      if (prepared === undefined) return run(entry, handler, worker)
      // Not ready (already recorded), or ready after reading its shared payload.
      return Effect.flatMap(prepared, (ready) => ready ? run(entry, handler, worker) : worker.continue)
    }

    // A worker with no claimed task waits to be handed one. Without a canceller (which costs an `onInterrupt`
    // region per wait): only shutdown interrupts a waiting worker (`cancel` interrupts workers in a handler), and
    // `handOver` skips a worker whose fiber has ended; a task handed to one that is still ending stays `running`
    // with no worker, which the finalizer puts back.
    const waitForTask = (worker: Worker): Effect.Effect<Entry> =>
      Effect.async<Entry>((resume) => {
        worker.wake = resume
        idle.push(worker)
        // Ready tasks the workers did not claim (a worker stops claiming after a failure): the claimer's.
        if (ready.length > 0) poke()
      })

    const handOver = (entry: Entry) => {
      for (;;) {
        const worker = idle.shift()
        if (worker === undefined) return claimed.push(entry)
        const wake = worker.wake
        worker.wake = undefined
        if (wake !== undefined && worker.fiber?.unsafePoll() === null) return wake(Exit.succeed(entry))
      }
    }

    // Attempts run on up to `concurrency` worker fibers rather than a fiber each: forking one per attempt was half
    // the cost of running a task. To cancel a running task, its worker is interrupted (see `cancel`): it is marked
    // retiring first, so it stops after that attempt and never carries the interruption into another task's
    // handler; the claimer starts another in its place when tasks wait. The loop is uninterruptible but for the
    // wait and the handler. Its continuations are made once per worker, not per attempt, and an attempt ends by
    // going on to the next (`worker.continue`), with no frame of the loop to return to: these are the steps every
    // task takes.
    const work = (worker: Worker): Effect.Effect<void> =>
      Effect.uninterruptibleMask((restore) => {
        worker.restore = restore
        const waiting = restore(waitForTask(worker))
        const next = (): Effect.Effect<void> => {
          const own = worker.next
          if (own !== undefined) {
            // Claimed with the last outcome; if the worker stops, the finalizer gives the attempt back.
            worker.next = undefined
            if (!(worker.retiring || closing)) return take(own)
            poke()
            return Effect.void
          }
          if (worker.retiring || closing) return Effect.void
          // A claimed task in hand: no wait, and no interruptible region to enter and leave.
          const entry = claimed.shift()
          return entry === undefined ? Effect.flatMap(waiting, take) : take(entry)
        }
        worker.continue = Effect.suspend(next)
        const take = (entry: Entry): Effect.Effect<void> => attempt(entry, worker)
        worker.outcome = {
          onSuccess: () => {
            const entry = worker.entry!
            running--
            entry.worker = undefined
            worker.entry = undefined
            return succeeded(entry, worker, clock.unsafeCurrentTimeMillis())
          },
          onFailure: (cause) => {
            const entry = worker.entry!
            running--
            entry.worker = undefined
            worker.entry = undefined
            return Effect.zipRight(
              failed(entry, worker.handler!, Exit.failCause(cause) as Exit.Failure<void, TaskFailure>),
              worker.continue
            )
          }
        }
        return next()
      }).pipe(
        // An attempt records its own failures: the loop ends early only on a defect in the bookkeeping (or when
        // interrupted waiting); the claimer then starts another worker if tasks wait.
        Effect.onExit(() =>
          Effect.sync(() => {
            if (worker.retiring) return
            workers--
            worker.retiring = true
            poke()
          })
        )
      )

    const startWorker = Effect.suspend(() => {
      const worker: Worker = {
        fiber: undefined,
        retiring: false,
        entry: undefined,
        handler: undefined,
        wake: undefined,
        next: undefined,
        continue: Effect.void,
        restore: identityRestore,
        outcome: noOutcome
      }
      workers++
      // Started from the claimer or from `start`, maybe an uninterruptible region: the handlers must stay
      // interruptible.
      return Effect.map(FiberSet.run(fibers, Effect.interruptible(work(worker))), (fiber) => {
        worker.fiber = fiber
      })
    })

    // Workers for the claimed tasks that no idle worker took, up to `concurrency`.
    const startWorkers = Effect.suspend(() => {
      const wanted = Math.min(claimed.length, concurrency - workers)
      if (wanted <= 0 || closing) return Effect.void
      let i = 0
      return Effect.whileLoop({ while: () => i < wanted, body: () => startWorker, step: () => i++ })
    })

    const claimerIdle = Effect.async<void>((resume) => {
      wakeClaimer = () => {
        wakeClaimer = undefined
        resume(Effect.void)
      }
      return Effect.sync(() => {
        wakeClaimer = undefined
      })
    })

    // Claims ready tasks in batches: each is marked running, its attempt counted, in one commit for the batch,
    // then handed to a worker. The attempt is consumed before the handler runs, so a task that crashes the
    // process cannot loop. Up to `concurrency` claimed tasks wait for a worker: the claimer keeps one batch ahead
    // of the workers, so a worker does not wait for a commit per task.
    const claimer = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        // Replaces retired workers while claimed tasks wait.
        yield* startWorkers
        const room = claimRoom()
        if (ready.length === 0 || room <= 0 || closing) return yield* restore(claimerIdle)
        const now = yield* Time.now
        const batch: Array<Entry> = []
        while (batch.length < room) {
          const entry = ready.shift()
          if (entry === undefined) break
          if (!runnable(entry)) continue
          entry.row = { ...entry.row, status: "running", attempts: entry.row.attempts + 1, updatedAt: now }
          batch.push(entry)
        }
        if (batch.length === 0) return
        claiming = batch.length
        // Status, attempts and time: one statement for the batch (per distinct attempt count).
        const recorded = yield* Effect.either(store.transition(batch.map((entry) => entry.row)))
        claiming = 0
        if (recorded._tag === "Left") {
          // Not durable: leave them pending in memory and try later rather than run them unrecorded.
          for (const entry of batch) yield* retryLater(entry, entry.row)
          return
        }
        for (const entry of batch) handOver(entry)
        yield* startWorkers
      })
    ).pipe(Effect.forever)

    const start = Effect.suspend(() => {
      if (started) return Effect.void
      started = true
      return Effect.gen(function*() {
        yield* FiberSet.run(fibers, Effect.interruptible(claimer))
        const unfinished = yield* store.unfinished.pipe(
          Effect.catchAll((e) =>
            Effect.as(Effect.logError("could not load stored tasks", e.message), [] as ReadonlyArray<TaskRecord>)
          )
        )
        let resumed = 0
        for (const row of unfinished) {
          if (live.has(row.id)) continue
          track(row.status === "pending" ? row : { ...row, status: "pending" }, notDecoded, undefined)
          resumed++
        }
        if (resumed > 0) yield* Effect.logInfo(`resuming ${resumed} stored task(s)`)
        // Stored tasks and those scheduled before start, in next-attempt order: the due ones straight to the
        // claimer (in one go: resuming thousands of tasks is one loop, not an effect each).
        const waiting = [...live.values()].sort((a, b) => a.row.nextAttemptAt - b.row.nextAttemptAt)
        const now = yield* Time.now
        for (const entry of waiting) {
          if (entry.row.nextAttemptAt <= now) ready.push(entry)
          else yield* enqueueAt(entry, entry.row.nextAttemptAt)
        }
        poke()
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
        handlers.set(definition.name, { ...compile(definition), run, retry: registerOptions?.retry ?? fallbackRetry })
        return Effect.void
      })

    const handleOf = (row: TaskRecord): TaskHandle => ({
      id: row.id,
      name: row.name,
      idempotencyKey: row.idempotencyKey
    })

    // One `Effect.async`, resumed by the group commit with the answer: a schedule is two steps and one suspension.
    // The clock is the one the runner was made with (read once, like the workers'), not one per call.
    const schedule: TaskRunnerShape["schedule"] = (definition, payload, scheduleOptions) =>
      Effect.async<TaskHandle, TaskRunnerError>((resume) => {
        if (closing) {
          return resume(
            Effect.fail(new TaskRunnerError({ message: "the task runner is shutting down; task not accepted" }))
          )
        }
        const handler = handlers.get(definition.name)
        if (handler === undefined) {
          return resume(Effect.fail(
            new TaskRunnerError({ message: `no task handler named "${definition.name}" is registered` })
          ))
        }
        const key = scheduleOptions?.idempotencyKey
        const known = key === undefined ? undefined : byKey.get(key)
        if (known !== undefined) {
          if (known.stored) return resume(Effect.succeed(handleOf(known.row)))
          // The first schedule of this key is being committed: its answer is this one's.
          known.storing ??= Deferred.unsafeMake(FiberId.none)
          return resume(Deferred.await(known.storing))
        }
        if (live.size - running >= hardLimit) {
          return resume(Effect.fail(
            new TaskRunnerError({
              message: `the task runner already holds ${live.size - running} waiting tasks (limit ${hardLimit}, ` +
                `twice its queue capacity ${capacity}); check \`accepting\` before scheduling more`
            })
          ))
        }
        const encoded = handler.encode(payload)
        if (encoded._tag === "Left") {
          return resume(Effect.fail(
            new TaskRunnerError({
              message: `the payload of task "${definition.name}" does not encode: ${encoded.left.message}`
            })
          ))
        }
        const now = Time.fromMillis(clock.unsafeCurrentTimeMillis())
        const id = newId(now)
        const shared = scheduleOptions?.shared
        const row: TaskRecord = {
          id,
          name: definition.name,
          idempotencyKey: key ?? id,
          status: "pending",
          attempts: 0,
          phase: 0,
          nextAttemptAt: scheduleOptions?.delay === undefined ? now : Time.plus(now, scheduleOptions.delay),
          lastError: null,
          payload: encoded.right,
          retry: scheduleOptions?.retry === undefined ? null : JSON.stringify(scheduleOptions.retry),
          shared: shared?.hash ?? null,
          createdAt: now,
          updatedAt: now
        }
        const entry = track(row, payload, shared?.json)
        entry.stored = false
        // The shared payload is committed with the row, in one transaction: a stored task never names a missing
        // one. With a key, a stored task holding it (from before a restart, or finished) is the answer instead.
        // The bookkeeping runs in the commit's callback (a due task is queued even if its caller has gone); the
        // caller waits once, for its answer.
        store.submitInsert(
          { row, shared, dedupe: key !== undefined },
          (exit) => resume(stored(entry, now, exit))
        )
      })

    // A schedule's answer once its commit is done.
    const stored = (
      entry: Entry,
      now: number,
      exit: TaskStore.Committed
    ): Effect.Effect<TaskHandle, TaskRunnerError> => {
      const row = entry.row
      let answer: Exit.Exit<TaskHandle, TaskRunnerError>
      if (Exit.isFailure(exit)) {
        forget(entry)
        const failure = Cause.failureOption(exit.cause)
        answer = Option.isSome(failure) ?
          Exit.fail(new TaskRunnerError({ message: failure.value.message })) :
          Exit.failCause(exit.cause as Cause.Cause<never>)
      } else {
        const holder = exit.value.get(row.id)
        if (holder !== undefined) {
          forget(entry)
          answer = Exit.succeed(handleOf(holder))
        } else {
          entry.stored = true
          answer = Exit.succeed(handleOf(row))
        }
      }
      if (entry.storing !== undefined) Deferred.unsafeDone(entry.storing, answer)
      if (!entry.stored) return answer
      if (!started) {
        return Effect.zipRight(Effect.logDebug("task scheduled before start; it runs once the runner starts"), answer)
      }
      if (row.nextAttemptAt <= now) {
        enqueue(entry)
        return answer
      }
      return Effect.zipRight(enqueueAt(entry, row.nextAttemptAt), answer)
    }

    const get = (id: string) =>
      Effect.suspend(() => {
        const entry = live.get(id)
        if (entry !== undefined) return Effect.succeed(Option.some(entry.row))
        return store.get(id).pipe(Effect.orElseSucceed(() => Option.none<TaskRecord>()))
      })

    const cancel = (id: string) =>
      Effect.gen(function*() {
        const entry = live.get(id)
        // A finished task is kept until its outcome is committed; it cannot be cancelled any more.
        if (entry === undefined || entry.cancelled || TaskStore.isTerminal(entry.row.status)) return false
        entry.cancelled = true
        if (entry.timer !== undefined) yield* Fiber.interrupt(entry.timer)
        const worker = entry.worker
        if (worker !== undefined) {
          // Its worker records the interrupted attempt as cancelled and stops; another takes its place.
          if (!worker.retiring) workers--
          worker.retiring = true
          if (worker.fiber !== undefined) yield* Fiber.interrupt(worker.fiber)
          // The claimer starts another worker if claimed tasks wait.
          poke()
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
        const entry = track(
          { ...row, status: "pending", attempts: 0, nextAttemptAt: now, updatedAt: now },
          notDecoded,
          undefined
        )
        yield* store.update(entry.row).pipe(
          Effect.tapError(() => Effect.sync(() => forget(entry))),
          Effect.mapError((e) => new TaskRunnerError({ message: e.message }))
        )
        if (started) yield* enqueueAt(entry, now)
        yield* Effect.logInfo("task replayed").pipe(Effect.annotateLogs({ task: id, name: row.name }))
        return handleOf(entry.row)
      })

    const list: TaskRunnerShape["list"] = ({ limit, status }) =>
      // Flushed first, so the listing reflects every change made before the call.
      store.flush.pipe(
        Effect.zipRight(store.list(status, Math.max(1, Math.min(limit ?? 100, 1000)))),
        Effect.map((rows) => rows.map((row) => live.get(row.id)?.row ?? row)),
        Effect.orElseSucceed(() => [])
      )

    // Shutdown: stop taking tasks, let running ones finish within the grace period, interrupt the rest
    // (they stay pending), then commit the bookkeeping. The store's writer outlives this (its layer is built
    // first, so it is released last).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        // Workers running a handler stop after it (`closing`); the others wait for work and are interrupted below.
        const busyWorkers = () =>
          [...live.values()].flatMap((e) => e.worker?.fiber === undefined ? [] : [e.worker.fiber])
        const inFlight = busyWorkers()
        if (inFlight.length > 0) {
          // Finalizers are uninterruptible; the wait itself must not be, or the timeout could not end it.
          const drained = yield* Effect.interruptible(Fiber.awaitAll(inFlight)).pipe(
            Effect.timeout(grace),
            Effect.option
          )
          if (Option.isNone(drained)) {
            const left = busyWorkers()
            yield* Effect.logWarning(`shutdown grace elapsed; interrupting ${left.length} running task(s)`)
            yield* Fiber.interruptAll(left)
          }
        }
        // Workers finish their bookkeeping (uninterruptible) before they stop.
        yield* FiberSet.clear(fibers)
        // Claimed tasks that never reached a worker get their attempt back.
        for (const entry of live.values()) {
          if (entry.row.status === "running" && entry.worker === undefined) {
            yield* Effect.flatMap(
              update(entry, { status: "pending", attempts: entry.row.attempts - 1 }),
              (row) => store.updateLater(row)
            )
          }
        }
        yield* Effect.ignore(store.flush)
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
      prune: (olderThan) =>
        Effect.zipRight(store.flush, store.pruneFinished(olderThan)).pipe(
          Effect.mapError((e) => new TaskRunnerError({ message: e.message }))
        ),
      stats: Effect.sync(() => ({
        queued: ready.length + claiming + claimed.length + claimedAhead,
        running,
        live: live.size
      })),
      accepting: Effect.sync(() => live.size - running < capacity),
      capacity
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// Layers

/** The runner on the `TaskStore` in context. */
export const layer = (options: Options = {}): Layer.Layer<TaskRunner, never, TaskStore.TaskStore> =>
  Layer.scoped(TaskRunner, make(options))

export const layerMemory = (options: Options = {}): Layer.Layer<TaskRunner> =>
  layer(options).pipe(Layer.provide(TaskStore.layerMemory(options)))

/** Durable: rows in the state database (`StateDb.layer` provides the `SqlClient` and `StateWriter`). */
export const layerSqlite = (
  options: Options = {}
): Layer.Layer<TaskRunner, TaskRunnerError, SqlClient.SqlClient | StateWriter.StateWriter> =>
  layer(options).pipe(
    Layer.provide(
      TaskStore.layerSqlite(options).pipe(
        Layer.mapError((e) => new TaskRunnerError({ message: `cannot open the task store: ${e.message}` }))
      )
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
