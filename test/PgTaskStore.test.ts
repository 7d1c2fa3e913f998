/**
 * The durable task runner on the Postgres task store: tasks, shared payloads and idempotency keys survive a
 * restart; a second runner on the same database is refused while the first runs, and takes the queue over once it
 * stops, with no task run twice and none lost.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Option, Redacted, Schema, Scope } from "effect"
import * as PgTaskStore from "../src/delivery/PgTaskStore.js"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import * as PgDb from "../src/state/postgres/PgDb.js"
import * as Postgres from "./utils/Postgres.js"

const Job = TaskRunner.define("test.job", Schema.Struct({ n: Schema.Number }))

/** A runner on `url` in `scope`, its handler `behave`; `runs` counts the attempts per `n`. */
const open = (
  url: string,
  scope: Scope.Scope,
  runs: Map<number, number>,
  behave: (n: number, shared: string | undefined) => Effect.Effect<void, TaskRunner.TaskFailure>
) =>
  Effect.gen(function*() {
    const layer = PgTaskStore.layerRunner({ shutdownGrace: "50 millis" }).pipe(
      Layer.provide(PgDb.layer({ url: Redacted.make(url), maxConnections: 4 }))
    )
    const runner = Context.get(yield* Layer.buildWithScope(layer, scope), TaskRunner.TaskRunner)
    yield* runner.register(Job, ({ n }, ctx) =>
      Effect.suspend(() => {
        runs.set(n, (runs.get(n) ?? 0) + 1)
        return behave(n, ctx.shared)
      }))
    yield* runner.start
    return runner
  })

const awaitStatus = (runner: TaskRunner.TaskRunnerShape, id: string, status: TaskRunner.TaskStatus) =>
  Effect.gen(function*() {
    for (let i = 0; i < 600; i++) {
      const s = yield* runner.status(id)
      if (Option.isSome(s) && s.value === status) return
      yield* Effect.sleep("50 millis")
    }
    assert.fail(`task ${id} is not ${status}`)
  })

describe("TaskRunner on Postgres", () => {
  it.scopedLive("tasks, shared payloads and keys survive a restart", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const runs = new Map<number, number>()
      const shared = TaskRunner.sharedPayload(JSON.stringify({ reply: "kept" }))
      const first = yield* Scope.make()
      const one = yield* open(url, first, runs, (n) => n === 2 ? Effect.never : Effect.void)
      const done = yield* one.schedule(Job, { n: 1 }, { idempotencyKey: "k-1" })
      const stuck = yield* one.schedule(Job, { n: 2 }, { shared })
      yield* awaitStatus(one, done.id, "succeeded")
      assert.strictEqual((yield* one.schedule(Job, { n: 9 }, { idempotencyKey: "k-1" })).id, done.id)
      // Until the stuck attempt has started (a fixed sleep was too short under load: workers start on demand).
      for (let i = 0; i < 600 && runs.get(2) === undefined; i++) yield* Effect.sleep("10 millis")
      assert.strictEqual(runs.get(2), 1, "the stuck attempt started")
      // Shutdown interrupts the stuck attempt: the task stays unfinished in the table.
      yield* Scope.close(first, Exit.void)

      const second = yield* Scope.make()
      const seenShared: Array<string | undefined> = []
      const two = yield* open(url, second, runs, (_n, s) => Effect.sync(() => void seenShared.push(s)))
      yield* awaitStatus(two, stuck.id, "succeeded")
      assert.deepStrictEqual(seenShared, [shared.json])
      // The key is remembered across the restart.
      assert.strictEqual((yield* two.schedule(Job, { n: 9 }, { idempotencyKey: "k-1" })).id, done.id)
      assert.deepStrictEqual([...runs], [[1, 1], [2, 2]])
      const failed = yield* two.list({ status: "succeeded" })
      assert.strictEqual(failed.length, 2)
      assert.strictEqual(yield* two.prune(Number.MAX_SAFE_INTEGER as never), 2)
      yield* Scope.close(second, Exit.void)
    }))

  it.scopedLive("one queue, two runners: the second is refused while the first runs, then takes over; none twice, none lost", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const runs = new Map<number, number>()
      const first = yield* Scope.make()
      const gate = yield* Deferred.make<void>()
      // The first runner finishes even tasks and holds odd ones until it is stopped.
      const one = yield* open(url, first, runs, (n) => n % 2 === 0 ? Effect.void : Deferred.await(gate))
      const handles = yield* Effect.forEach(Array.from({ length: 40 }, (_, n) => n), (n) => one.schedule(Job, { n }))

      const refused = yield* Effect.flip(
        Effect.scoped(Effect.flatMap(Effect.scope, (scope) => open(url, scope, new Map(), () => Effect.void)))
      )
      assert.include(refused.message, "another host runs the durable task queue")

      for (const h of handles.filter((_, n) => n % 2 === 0)) yield* awaitStatus(one, h.id, "succeeded")
      yield* Scope.close(first, Exit.void)

      const second = yield* Scope.make()
      const two = yield* open(url, second, runs, () => Effect.void)
      for (const h of handles) yield* awaitStatus(two, h.id, "succeeded")
      // Even tasks ran once; odd ones were interrupted on the first runner and ran again on the second.
      for (let n = 0; n < 40; n++) assert.strictEqual(runs.get(n), n % 2 === 0 ? 1 : 2, `task ${n}`)
      yield* Scope.close(second, Exit.void)
    }))
})
