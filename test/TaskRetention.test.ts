/**
 * Task retention (`TaskRunner.layerRetention`, what `npm start` composes): every prune interval, finished tasks
 * (succeeded, dead-lettered) last updated more than `taskRetention` ago are deleted; fresh finished tasks, running
 * ones and pending ones stay. On the memory and the SQLite backend, with `TestClock` at a realistic date.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Layer, Option, Schema, TestClock } from "effect"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import * as Persistence from "../src/state/Persistence.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as TempDir from "./utils/TempDir.js"

const Job = TaskRunner.define("test.retention", Schema.Struct({ kind: Schema.String }))
const start = Date.parse("2026-03-01T12:00:00Z")
const interval = Duration.minutes(1)

const settings = Layer.succeed(Persistence.Persistence, {
  ...Persistence.defaults,
  taskRetention: Duration.hours(1),
  pruneInterval: interval
})

const advance = (total: Duration.Duration) =>
  Effect.gen(function*() {
    const steps = Math.round(Duration.toMillis(total) / Duration.toMillis(interval))
    for (let i = 0; i < steps; i++) yield* TestClock.adjust(interval)
  })

const scenario = (runnerLayer: Layer.Layer<TaskRunner.TaskRunner, TaskRunner.TaskRunnerError>) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(start)
    const release = yield* Deferred.make<void>()
    const context = yield* Layer.build(runnerLayer)
    const runner = Context.get(context, TaskRunner.TaskRunner)
    yield* runner.register(Job, ({ kind }) =>
      kind === "fail" ?
        Effect.fail(TaskRunner.TaskFailed.terminal("no")) :
        kind === "block" ?
        Deferred.await(release) :
        Effect.void)
    yield* runner.start
    yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
    yield* Layer.build(
      TaskRunner.layerRetention.pipe(Layer.provide(settings), Layer.provide(Layer.succeedContext(context)))
    )

    const status = (id: string) => Effect.map(runner.get(id), Option.map((row) => row.status))
    const awaitStatus = (id: string, wanted: TaskRunner.TaskStatus) =>
      Effect.gen(function*() {
        for (let i = 0; i < 20_000; i++) {
          const s = yield* status(id)
          if (Option.isSome(s) && s.value === wanted) return
          yield* i % 100 === 99 ? Effect.promise(() => new Promise((r) => setImmediate(r))) : Effect.yieldNow()
        }
        assert.fail(`task ${id} never became ${wanted}`)
      })

    const done = yield* runner.schedule(Job, { kind: "ok" })
    const dead = yield* runner.schedule(Job, { kind: "fail" })
    const running = yield* runner.schedule(Job, { kind: "block" })
    const later = yield* runner.schedule(Job, { kind: "ok" }, { delay: Duration.hours(5) })
    yield* awaitStatus(done.id, "succeeded")
    yield* awaitStatus(dead.id, "failed")
    yield* awaitStatus(running.id, "running")

    yield* advance(Duration.minutes(50))
    const fresh = yield* runner.schedule(Job, { kind: "ok" })
    yield* awaitStatus(fresh.id, "succeeded")
    assert.deepStrictEqual(yield* status(done.id), Option.some("succeeded"), "kept within the retention")

    yield* advance(Duration.minutes(12))
    assert.isTrue(Option.isNone(yield* status(done.id)), "a finished task older than the retention is pruned")
    assert.isTrue(Option.isNone(yield* status(dead.id)), "so is a dead letter")
    assert.deepStrictEqual(yield* status(fresh.id), Option.some("succeeded"), "a fresh finished task stays")
    assert.deepStrictEqual(yield* status(running.id), Option.some("running"), "a running task is never pruned")
    assert.deepStrictEqual(yield* status(later.id), Option.some("pending"), "nor a pending one")
  })

describe("Task retention", () => {
  it.scoped("memory backend", () => scenario(TaskRunner.layerMemory()))

  it.scoped("sqlite backend", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      yield* scenario(TaskRunner.layerSqlite().pipe(Layer.provide(StateDb.layer({ directory })), Layer.orDie))
    }))
})
