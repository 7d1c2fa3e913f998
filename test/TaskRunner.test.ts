import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Schema, Scope, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TaskContext, TaskFailure, TaskRunnerShape } from "../src/delivery/TaskRunner.js"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import * as TaskStore from "../src/delivery/TaskStore.js"
import * as Time from "../src/domain/Time.js"
import m0001 from "../src/state/sqlite/migrations/0001_state.js"
import m0002 from "../src/state/sqlite/migrations/0002_checkpoints.js"
import m0003 from "../src/state/sqlite/migrations/0003_epoch_millis.js"
import m0004 from "../src/state/sqlite/migrations/0004_response_user_key.js"
import * as Migrations from "../src/state/sqlite/migrations/index.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"

const Job = TaskRunner.define("test.job", Schema.Struct({ n: Schema.Number }))

const noJitter: TaskRunner.RetryPolicy = {
  maxAttempts: 5,
  initialDelayMillis: 1_000,
  factor: 2,
  maxDelayMillis: 60_000,
  jitter: false
}

interface Seen {
  readonly n: number
  readonly attempt: number
  readonly phase: number
  readonly key: string
  readonly at: number
}

/** Builds a runner in `scope` whose handler answers with `behave` per attempt. */
const build = (
  scope: Scope.Scope,
  behave: (n: number, context: TaskContext) => Effect.Effect<void, TaskFailure>,
  layer: Layer.Layer<TaskRunner.TaskRunner, TaskRunner.TaskRunnerError> = TaskRunner.layerMemory()
) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const context = yield* Layer.buildWithScope(layer, scope)
    const r = Context.get(context, TaskRunner.TaskRunner)
    yield* r.register(Job, ({ n }, ctx) =>
      Effect.flatMap(
        Effect.clockWith((c) => c.currentTimeMillis),
        (at) => {
          seen.push({ n, attempt: ctx.attempt, phase: ctx.phase, key: ctx.idempotencyKey, at })
          return behave(n, ctx)
        }
      ))
    yield* r.start
    return { runner: r, seen }
  })

const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Waits (yielding, real I/O may be involved) until `check` holds. */
const until = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      if (check()) return
      yield* i % 100 === 99 ? Effect.promise(() => new Promise((r) => setImmediate(r))) : Effect.yieldNow()
    }
    assert.fail(`timed out waiting for ${what}`)
  })

/** Waits until a sleep ends at `at` on the test clock (a retry timer has been set). */
const untilSleep = (at: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      const sleeps = yield* TestClock.sleeps()
      if ([...sleeps].includes(at)) return
      yield* i % 100 === 99 ? Effect.promise(() => new Promise((r) => setImmediate(r))) : Effect.yieldNow()
    }
    assert.fail(`no timer for ${at}`)
  })

const awaitStatus = (runner: TaskRunnerShape, id: string, status: TaskRunner.TaskStatus) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20_000; i++) {
      const s = yield* runner.status(id)
      if (Option.isSome(s) && s.value === status) return
      yield* i % 100 === 99 ? Effect.promise(() => new Promise((r) => setImmediate(r))) : Effect.yieldNow()
    }
    const s = yield* runner.status(id)
    assert.fail(`task ${id} is ${Option.getOrElse(s, () => "unknown")}, expected ${status}`)
  })

describe("TaskRunner (memory)", () => {
  it.scoped("retries on the schedule's delays, then succeeds", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, (_n, ctx) =>
        ctx.attempt < 3 ? Effect.fail(TaskRunner.TaskFailed.retryable("busy")) : Effect.void)
      const handle = yield* runner.schedule(Job, { n: 1 }, { retry: noJitter })
      yield* settle
      assert.strictEqual(seen.length, 1)
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.strictEqual(seen.length, 1)
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(seen.length, 2)
      yield* TestClock.adjust("1999 millis")
      yield* settle
      assert.strictEqual(seen.length, 2)
      yield* TestClock.adjust("1 millis")
      yield* awaitStatus(runner, handle.id, "succeeded")
      assert.deepStrictEqual(
        seen.map((s) =>
          s.at
        ),
        [0, 1000, 3000]
      )
      const record = Option.getOrThrow(yield* runner.get(handle.id))
      assert.strictEqual(record.attempts, 3)
    }))

  it.scoped("default schedule: jittered exponential from 1 s, 5 attempts, then a dead letter", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, () => Effect.fail(TaskRunner.TaskFailed.retryable("down")))
      const handle = yield* runner.schedule(Job, { n: 1 })
      for (let i = 0; i < 8; i++) {
        yield* settle
        yield* TestClock.adjust("10 seconds")
      }
      yield* awaitStatus(runner, handle.id, "failed")
      assert.strictEqual(seen.length, 5)
      const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at)
      // The test clock advances in 10 s steps, so each gap is the first step past the jittered delay.
      for (const gap of gaps) assert.isAtMost(gap, 20_000)
      const dead = yield* runner.list({ status: "failed" })
      assert.deepStrictEqual(dead.map((r) => r.id), [handle.id])
      assert.strictEqual(dead[0]!.lastError, "down")
    }))

  it.effect("the default schedule's delays: 1, 2, 4, 8 s (jittered ±20%), capped at 60 s", () =>
    Effect.gen(function*() {
      const schedule = TaskRunner.defaultRetry
      let state = schedule.initial
      const delays: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const [next, , decision] = yield* schedule.step(0, undefined, state)
        if (decision._tag === "Done") break
        state = next
        delays.push(decision.intervals.intervals.pipe((c) => [...c][0]!.startMillis))
      }
      assert.strictEqual(delays.length, 4)
      ;[1000, 2000, 4000, 8000].forEach((base, i) => {
        assert.isAtLeast(delays[i]!, base * 0.8)
        assert.isAtMost(delays[i]!, base * 1.2)
      })
      const capped = TaskRunner.retrySchedule({ ...TaskRunner.defaultRetryPolicy, maxAttempts: 12 })
      let s = capped.initial
      let last = 0
      for (let i = 0; i < 11; i++) {
        const [next, , decision] = yield* capped.step(0, undefined, s)
        s = next
        if (decision._tag === "Continue") last = [...decision.intervals.intervals][0]!.startMillis
      }
      assert.strictEqual(last, 60_000)
    }))

  it.scoped("a retry-after replaces the next delay", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, (_n, ctx) =>
        ctx.attempt === 1 ?
          Effect.fail(TaskRunner.TaskFailed.retryable("429", Duration.seconds(7))) :
          Effect.void)
      const handle = yield* runner.schedule(Job, { n: 1 }, { retry: noJitter })
      yield* settle
      yield* TestClock.adjust("6999 millis")
      yield* settle
      assert.strictEqual(seen.length, 1)
      yield* TestClock.adjust("1 millis")
      yield* awaitStatus(runner, handle.id, "succeeded")
      assert.deepStrictEqual(seen.map((s) => s.at), [0, 7000])
    }))

  it.scoped("a terminal failure is not retried", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, () => Effect.fail(TaskRunner.TaskFailed.terminal("403 forbidden")))
      const handle = yield* runner.schedule(Job, { n: 1 })
      yield* awaitStatus(runner, handle.id, "failed")
      yield* TestClock.adjust("5 minutes")
      yield* settle
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(Option.getOrThrow(yield* runner.get(handle.id)).lastError, "403 forbidden")
    }))

  it.scoped("the same idempotency key runs once; the handler receives the key", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, () => Effect.void)
      const a = yield* runner.schedule(Job, { n: 1 }, { idempotencyKey: "k-1" })
      const b = yield* runner.schedule(Job, { n: 2 }, { idempotencyKey: "k-1" })
      assert.strictEqual(a.id, b.id)
      yield* awaitStatus(runner, a.id, "succeeded")
      const c = yield* runner.schedule(Job, { n: 3 }, { idempotencyKey: "k-1" })
      assert.strictEqual(c.id, a.id)
      yield* settle
      assert.deepStrictEqual(seen.map((s) => [s.n, s.key]), [[1, "k-1"]])
    }))

  it.scoped("the phase cursor survives a retry", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const phases: Array<string> = []
      const { runner, seen } = yield* build(scope, (_n, ctx) =>
        Effect.gen(function*() {
          if (ctx.phase < 1) {
            phases.push("echo")
            yield* ctx.completePhase(1)
          }
          if (ctx.attempt === 1) return yield* TaskRunner.TaskFailed.retryable("reply failed")
          phases.push("reply")
        }))
      const handle = yield* runner.schedule(Job, { n: 1 }, { retry: noJitter })
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* awaitStatus(runner, handle.id, "succeeded")
      assert.deepStrictEqual(phases, ["echo", "reply"])
      assert.deepStrictEqual(seen.map((s) => s.phase), [0, 1])
    }))

  it.scoped("cancel: a waiting task never runs; a running one is interrupted", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const started = yield* Deferred.make<void>()
      const { runner, seen } = yield* build(scope, (n) =>
        n === 2 ? Effect.zipRight(Deferred.succeed(started, undefined), Effect.never) : Effect.void)
      const later = yield* runner.schedule(Job, { n: 1 }, { delay: "1 minute" })
      assert.isTrue(yield* runner.cancel(later.id))
      assert.isFalse(yield* runner.cancel(later.id))
      const busy = yield* runner.schedule(Job, { n: 2 })
      yield* Deferred.await(started)
      assert.isTrue(yield* runner.cancel(busy.id))
      yield* awaitStatus(runner, busy.id, "cancelled")
      yield* TestClock.adjust("2 minutes")
      yield* settle
      assert.deepStrictEqual(
        seen.map((s) =>
          s.n
        ),
        [2]
      )
      assert.deepStrictEqual(Option.getOrThrow(yield* runner.status(later.id)), "cancelled")
    }))

  it.scoped("a defect in a handler is a retryable failure", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner, seen } = yield* build(scope, (_n, ctx) => ctx.attempt === 1 ? Effect.die("boom") : Effect.void)
      const handle = yield* runner.schedule(Job, { n: 1 }, { retry: noJitter })
      yield* untilSleep(1000)
      assert.include(Option.getOrThrow(yield* runner.get(handle.id)).lastError, "handler defect: boom")
      yield* TestClock.adjust("1 second")
      yield* awaitStatus(runner, handle.id, "succeeded")
      assert.deepStrictEqual(seen.map((s) => s.attempt), [1, 2])
    }))

  it.scoped("cancelling a running task leaves the other tasks running, and the pool whole", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const started = yield* Deferred.make<void>()
      const { runner, seen } = yield* build(
        scope,
        (n) => n === 1 ? Effect.zipRight(Deferred.succeed(started, undefined), Effect.never) : Effect.void,
        TaskRunner.layerMemory({ concurrency: 1 })
      )
      const stuck = yield* runner.schedule(Job, { n: 1 })
      yield* Deferred.await(started)
      const waiting = yield* runner.schedule(Job, { n: 2 })
      assert.isTrue(yield* runner.cancel(stuck.id))
      yield* awaitStatus(runner, stuck.id, "cancelled")
      yield* awaitStatus(runner, waiting.id, "succeeded")
      // The one worker was replaced: later tasks still run, one at a time.
      for (let n = 3; n < 6; n++) yield* awaitStatus(runner, (yield* runner.schedule(Job, { n })).id, "succeeded")
      assert.deepStrictEqual(seen.map((s) => s.n), [1, 2, 3, 4, 5])
      assert.isFalse(yield* runner.cancel(waiting.id))
    }))

  it.scoped("replay runs a dead letter again with a fresh budget", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      let healthy = false
      const { runner, seen } = yield* build(scope, () =>
        healthy ? Effect.void : Effect.fail(TaskRunner.TaskFailed.terminal("bad gateway config")))
      const handle = yield* runner.schedule(Job, { n: 1 })
      yield* awaitStatus(runner, handle.id, "failed")
      const notFailed = yield* runner.schedule(Job, { n: 9 })
      healthy = true
      yield* awaitStatus(runner, notFailed.id, "succeeded")
      const refused = yield* Effect.flip(runner.replay(notFailed.id))
      assert.include(refused.message, "only failed or cancelled")
      const again = yield* runner.replay(handle.id)
      assert.strictEqual(again.id, handle.id)
      yield* awaitStatus(runner, handle.id, "succeeded")
      assert.strictEqual(Option.getOrThrow(yield* runner.get(handle.id)).attempts, 1)
      assert.deepStrictEqual(
        seen.map((s) =>
          s.n
        ),
        [1, 9, 1]
      )
    }))

  it.scoped("register after start and unknown handlers are refused", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const { runner } = yield* build(scope, () => Effect.void)
      const late = yield* Effect.flip(runner.register(TaskRunner.define("late", Schema.String), () => Effect.void))
      assert.include(late.message, "has started")
      const unknown = yield* Effect.flip(runner.schedule(TaskRunner.define("nope", Schema.String), "x"))
      assert.include(unknown.message, "no task handler named \"nope\"")
    }))

  it.scoped("bounded concurrency; a full queue stops accepting work, and scheduling never waits", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const gate = yield* Deferred.make<void>()
      let active = 0
      let peak = 0
      const { runner } = yield* build(
        scope,
        () =>
          Effect.acquireUseRelease(
            Effect.sync(() => {
              active++
              peak = Math.max(peak, active)
            }),
            () => Deferred.await(gate),
            () => Effect.sync(() => active--)
          ),
        TaskRunner.layerMemory({ concurrency: 2, queueCapacity: 2 })
      )
      const handles = []
      for (let n = 0; n < 3; n++) handles.push(yield* runner.schedule(Job, { n }))
      yield* settle
      // Two running, one waiting: still room for one more.
      assert.isTrue(yield* runner.accepting)
      handles.push(yield* runner.schedule(Job, { n: 3 }))
      yield* settle
      // Two running, two waiting: full. Callers check `accepting` before taking on work...
      assert.isFalse(yield* runner.accepting)
      assert.strictEqual(runner.capacity, 2)
      // ...but a task scheduled anyway is stored and queued at once rather than blocking its caller (formerly
      // `schedule` waited here for room, which hung the HTTP request that delivered a reply).
      handles.push(yield* runner.schedule(Job, { n: 4 }))
      assert.deepStrictEqual(yield* runner.stats, { queued: 3, running: 2, live: 5 })
      yield* Deferred.succeed(gate, undefined)
      for (const h of handles) yield* awaitStatus(runner, h.id, "succeeded")
      assert.strictEqual(peak, 2)
      assert.isTrue(yield* runner.accepting)
    }))

  it.effect("shutdown drains running tasks within the grace period and interrupts the rest", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const finished: Array<number> = []
      const { runner } = yield* build(
        scope,
        (n) => Effect.as(Effect.sleep(Duration.seconds(n)), undefined).pipe(Effect.tap(() => finished.push(n))),
        TaskRunner.layerMemory({ shutdownGrace: "5 seconds" })
      )
      const quick = yield* runner.schedule(Job, { n: 2 })
      const slow = yield* runner.schedule(Job, { n: 30 })
      yield* settle
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle
      const refused = yield* Effect.flip(runner.schedule(Job, { n: 1 }))
      assert.include(refused.message, "shutting down")
      yield* TestClock.adjust("2 seconds")
      yield* settle
      assert.deepStrictEqual(finished, [2])
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(closing)
      assert.deepStrictEqual(finished, [2])
      assert.strictEqual(Option.getOrThrow(yield* runner.status(quick.id)), "succeeded")
      assert.strictEqual(Option.getOrThrow(yield* runner.status(slow.id)), "pending")
    }))
})

const tmpDb = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "tasks-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => Path.join(dir, StateDb.databaseFile)))

/** The durable runner on the state database `filename` (`<dir>/state.db`), opened as `npm start` opens it. */
const sqliteRunner = (filename: string, options: TaskRunner.Options = {}) =>
  TaskRunner.layerSqlite(options).pipe(
    Layer.provide(StateDb.layer({ directory: Path.dirname(filename) })),
    Layer.orDie
  )

/**
 * A state database as the previous version left it: the state migrations before the task tables joined them
 * (0001-0004), and the task tables made by the runner's own migrator (table `agent_host_task_migrations`; with
 * `shared`, both of its migrations, else only the first). It holds a pending task, a task a crash left running
 * (naming a shared payload when there is one) and a finished task with an idempotency key.
 */
const oldDatabase = (filename: string, options: { readonly shared: boolean }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrator.make({})({
      loader: Migrator.fromRecord({
        "0001_state": m0001,
        "0002_checkpoints": m0002,
        "0003_epoch_millis": m0003,
        "0004_response_user_key": m0004
      }),
      table: "agent_host_migrations"
    })
    yield* sql`CREATE TABLE agent_host_task_migrations (
      migration_id integer PRIMARY KEY NOT NULL,
      created_at datetime NOT NULL DEFAULT current_timestamp,
      name VARCHAR(255) NOT NULL
    )`
    yield* sql`CREATE TABLE IF NOT EXISTS agent_host_tasks (
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
    )`
    yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_key ON agent_host_tasks (idempotency_key)`
    yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_status ON agent_host_tasks (status, updated_at)`
    yield* sql`INSERT INTO agent_host_task_migrations (migration_id, name) VALUES (1, 'create_tasks')`
    const row = (id: string, key: string, status: string, attempts: number, n: number) =>
      sql`INSERT INTO agent_host_tasks (id, name, idempotency_key, status, attempts, phase, next_attempt_at,
        last_error, payload, retry, created_at, updated_at)
        VALUES (${id}, 'test.job', ${key}, ${status}, ${attempts}, 0, 0, NULL, ${JSON.stringify({ n })}, NULL, 0, 0)`
    yield* row("task_old_pending", "task_old_pending", "pending", 1, 41)
    yield* row("task_old_running", "old-running-key", "running", 2, 42)
    yield* row("task_old_done", "old-done-key", "succeeded", 1, 43)
    if (options.shared) {
      yield* sql`ALTER TABLE agent_host_tasks ADD COLUMN shared TEXT`
      yield* sql`CREATE TABLE IF NOT EXISTS agent_host_task_payloads (
        hash TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
      )`
      yield* sql`CREATE INDEX IF NOT EXISTS agent_host_tasks_shared ON agent_host_tasks (shared) WHERE shared IS NOT NULL`
      yield* sql.unsafe(`CREATE TRIGGER IF NOT EXISTS agent_host_task_payloads_release AFTER DELETE ON agent_host_tasks
        WHEN old.shared IS NOT NULL AND NOT EXISTS (SELECT 1 FROM agent_host_tasks WHERE shared = old.shared)
        BEGIN DELETE FROM agent_host_task_payloads WHERE hash = old.shared; END`)
      yield* sql`INSERT INTO agent_host_task_migrations (migration_id, name) VALUES (2, 'shared_payloads')`
      yield* sql`INSERT INTO agent_host_task_payloads (hash, body, created_at) VALUES ('sha256:old', '{"reply":"kept"}', 0)`
      yield* sql`UPDATE agent_host_tasks SET shared = 'sha256:old' WHERE id = 'task_old_running'`
    }
  }).pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.orDie)

describe("TaskRunner (sqlite)", () => {
  it.scoped("resumes pending tasks after a restart with their attempts and next-attempt time", () =>
    Effect.gen(function*() {
      const filename = yield* tmpDb
      const first = yield* Scope.make()
      const one = yield* build(
        first,
        () => Effect.fail(TaskRunner.TaskFailed.retryable("down")),
        sqliteRunner(filename)
      )
      const handle = yield* one.runner.schedule(Job, { n: 7 }, { retry: noJitter, idempotencyKey: "resume-1" })
      yield* untilSleep(1000)
      yield* TestClock.adjust("1 second")
      yield* untilSleep(3000)
      assert.strictEqual(one.seen.length, 2)
      const stored = Option.getOrThrow(yield* one.runner.get(handle.id))
      assert.strictEqual(stored.attempts, 2)
      assert.strictEqual(stored.nextAttemptAt, 3000)
      yield* Scope.close(first, Exit.void)

      const second = yield* Scope.make()
      const two = yield* build(second, () => Effect.void, sqliteRunner(filename))
      yield* untilSleep(3000)
      assert.strictEqual(two.seen.length, 0)
      yield* TestClock.adjust("2 seconds")
      yield* awaitStatus(two.runner, handle.id, "succeeded")
      assert.deepStrictEqual(two.seen.map((s) => [s.n, s.attempt, s.key, s.at]), [[7, 3, "resume-1", 3000]])
      // The key is remembered across restarts.
      const dup = yield* two.runner.schedule(Job, { n: 8 }, { idempotencyKey: "resume-1" })
      assert.strictEqual(dup.id, handle.id)
      yield* Scope.close(second, Exit.void)
    }))

  it.scoped("transitions write many rows in one go, re-insert deleted ones, and are read, listed and pruned", () =>
    Effect.gen(function*() {
      const filename = yield* tmpDb
      const row = (id: string, status: TaskStore.TaskStatus, at: number): TaskStore.TaskRecord => ({
        id,
        name: "test.job",
        idempotencyKey: id,
        status,
        attempts: 0,
        phase: 2,
        nextAttemptAt: Time.fromMillis(5),
        lastError: null,
        payload: "{}",
        retry: null,
        shared: null,
        createdAt: Time.fromMillis(0),
        updatedAt: Time.fromMillis(at)
      })
      const store = Context.get(
        yield* Layer.build(
          TaskStore.layerSqlite().pipe(Layer.provide(StateDb.layer({ directory: Path.dirname(filename) })), Layer.orDie)
        ),
        TaskStore.TaskStore
      )
      for (const id of ["a", "b", "c", "d"]) yield* store.insert(row(id, "pending", 1), { dedupe: false })
      // a, b and the never-stored x are claimed alike; c succeeds; d fails.
      const claimed = ["a", "b", "x"].map((id) => ({ ...row(id, "running", 10), attempts: 1 }))
      yield* store.transition(claimed)
      yield* store.transition([{ ...row("c", "succeeded", 10), attempts: 1 }, {
        ...row("d", "failed", 10),
        lastError: "no"
      }])
      const read = (id: string) => Effect.map(store.get(id), Option.getOrThrow)
      for (const id of ["a", "b", "x"]) {
        const stored = yield* read(id)
        assert.deepStrictEqual([stored.status, stored.attempts, stored.phase, stored.nextAttemptAt], [
          "running",
          1,
          2,
          5
        ])
      }
      assert.deepStrictEqual((yield* read("d")).lastError, "no")
      // Later changes of the same task are written after its transition.
      yield* store.transition([{ ...row("a", "succeeded", 20), attempts: 1 }])
      yield* store.update({ ...row("b", "pending", 20), attempts: 0 })
      assert.deepStrictEqual((yield* store.unfinished).map((r) => [r.id, r.status]), [["b", "pending"], [
        "x",
        "running"
      ]])
      assert.deepStrictEqual((yield* store.list("succeeded", 10)).map((r) => r.id), ["a", "c"])
      assert.deepStrictEqual((yield* store.list("failed", 10)).map((r) => r.id), ["d"])
      assert.deepStrictEqual((yield* store.list("running", 10)).map((r) => r.id), ["x"])
      assert.strictEqual(yield* store.pruneFinished(Time.fromMillis(15)), 2)
      assert.deepStrictEqual((yield* store.list(undefined, 10)).map((r) => r.id).sort(), ["a", "b", "x"])
    }))

  it.scoped("a shared payload is stored once, with its tasks, and read by every task after a restart", () =>
    Effect.gen(function*() {
      const filename = yield* tmpDb
      const shared = TaskRunner.sharedPayload(JSON.stringify({ reply: "x".repeat(10_000) }))
      const first = yield* Scope.make()
      const one = yield* build(
        first,
        () => Effect.fail(TaskRunner.TaskFailed.retryable("down")),
        sqliteRunner(filename)
      )
      const handles = []
      for (let n = 0; n < 3; n++) {
        handles.push(yield* one.runner.schedule(Job, { n }, { retry: noJitter, shared }))
      }
      yield* until(() => one.seen.length === 3, "three first attempts")
      yield* Scope.close(first, Exit.void)

      const second = yield* Scope.make()
      const seenShared: Array<string | undefined> = []
      const two = yield* build(
        second,
        (_, ctx) => Effect.sync(() => void seenShared.push(ctx.shared)),
        sqliteRunner(filename)
      )
      yield* TestClock.adjust("1 second")
      for (const h of handles) yield* awaitStatus(two.runner, h.id, "succeeded")
      assert.deepStrictEqual(seenShared, [shared.json, shared.json, shared.json])
      yield* Scope.close(second, Exit.void)

      const counts = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ readonly n: number; readonly tasks: number }>`SELECT
          (SELECT count(*) FROM agent_host_task_payloads) AS n,
          (SELECT count(*) FROM agent_host_tasks WHERE shared = ${shared.hash}) AS tasks`
      }).pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.orDie)
      assert.deepStrictEqual(counts[0], { n: 1, tasks: 3 })
    }))

  it.scoped("shared payloads in memory are forgotten with the last task naming them", () =>
    Effect.gen(function*() {
      const backend = TaskStore.memoryBackend(1)
      const shared = TaskStore.sharedPayload("{\"a\":1}")
      const row = (id: string, status: TaskStore.TaskStatus): TaskStore.TaskRecord => ({
        id,
        name: "test.job",
        idempotencyKey: id,
        status,
        attempts: 0,
        phase: 0,
        nextAttemptAt: Time.fromMillis(0),
        lastError: null,
        payload: "{}",
        retry: null,
        shared: shared.hash,
        createdAt: Time.fromMillis(0),
        updatedAt: Time.fromMillis(0)
      })
      const insert = (r: TaskStore.TaskRecord) => ({ row: r, shared, dedupe: false })
      yield* backend.commit({ inserts: [insert(row("a", "pending")), insert(row("b", "pending"))], updates: [] })
      yield* backend.commit({ inserts: [], updates: [row("a", "succeeded")] })
      yield* backend.commit({ inserts: [], updates: [row("b", "succeeded")] })
      // `a` is forgotten (one finished row kept); `b` still names the payload.
      assert.isTrue(Option.isNone(yield* backend.get("a")))
      assert.deepStrictEqual(yield* backend.shared(shared.hash), Option.some("{\"a\":1}"))
      yield* backend.commit({
        inserts: [{ row: { ...row("c", "succeeded"), shared: null }, shared: undefined, dedupe: false }],
        updates: []
      })
      assert.isTrue(Option.isNone(yield* backend.get("b")))
      assert.isTrue(Option.isNone(yield* backend.shared(shared.hash)))
    }))

  it.scoped("dead letters are listed and replayable from the table", () =>
    Effect.gen(function*() {
      const filename = yield* tmpDb
      const scope = yield* Scope.make()
      let healthy = false
      const { runner } = yield* build(
        scope,
        () => healthy ? Effect.void : Effect.fail(TaskRunner.TaskFailed.terminal("gone")),
        sqliteRunner(filename)
      )
      const handle = yield* runner.schedule(Job, { n: 1 })
      yield* awaitStatus(runner, handle.id, "failed")
      yield* until(() => true, "")
      const dead = yield* runner.list({ status: "failed" })
      assert.deepStrictEqual(dead.map((r) => [r.id, r.lastError]), [[handle.id, "gone"]])
      healthy = true
      yield* runner.replay(handle.id)
      yield* awaitStatus(runner, handle.id, "succeeded")
      yield* Scope.close(scope, Exit.void)
    }))
  for (const shared of [true, false]) {
    it.scoped(`a database the previous version made opens with its tasks (${shared ? "both" : "one"} old task migration${shared ? "s" : ""})`, () =>
      Effect.gen(function*() {
        const filename = yield* tmpDb
        yield* oldDatabase(filename, { shared })
        const scope = yield* Scope.make()
        const seenShared: Array<string | undefined> = []
        const { runner, seen } = yield* build(
          scope,
          (_, ctx) => Effect.sync(() => void seenShared.push(ctx.shared)),
          sqliteRunner(filename)
        )
        yield* awaitStatus(runner, "task_old_pending", "succeeded")
        yield* awaitStatus(runner, "task_old_running", "succeeded")
        // Both resumed with their attempts counted; the one left running by a crash counts the attempt it lost.
        assert.sameDeepMembers(seen.map((s) => [s.n, s.attempt, s.key]), [
          [41, 2, "task_old_pending"],
          [42, 3, "old-running-key"]
        ])
        if (shared) assert.include(seenShared, "{\"reply\":\"kept\"}")
        // The finished task's key is still remembered.
        const again = yield* runner.schedule(Job, { n: 1 }, { idempotencyKey: "old-done-key" })
        assert.strictEqual(again.id, "task_old_done")
        // New tasks are stored in the migrated tables, keys and shared payloads included.
        const fresh = yield* runner.schedule(Job, { n: 2 }, {
          idempotencyKey: "new-key",
          shared: TaskStore.sharedPayload("{\"reply\":\"new\"}")
        })
        yield* awaitStatus(runner, fresh.id, "succeeded")
        assert.strictEqual((yield* runner.schedule(Job, { n: 3 }, { idempotencyKey: "new-key" })).id, fresh.id)
        yield* Scope.close(scope, Exit.void)

        const applied = yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ readonly migration_id: number }>`SELECT migration_id FROM agent_host_migrations
            ORDER BY migration_id`
        }).pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.orDie)
        // Every migration up to the latest (another table's migration may come after the task ones).
        assert.deepStrictEqual(
          applied.map((m) => m.migration_id),
          Array.from({ length: Migrations.latestId }, (_, i) => i + 1)
        )
      }))
  }
})
