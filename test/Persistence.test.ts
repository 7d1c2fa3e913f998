/**
 * The persistence composition: the mode picks the stores, services added with `layerWith` share the one
 * database, and retention prunes expired Responses on a schedule (TestClock, no waiting).
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Time from "../src/domain/Time.js"
import * as CheckpointStore from "../src/state/CheckpointStore.js"
import * as Persistence from "../src/state/Persistence.js"
import * as StateStore from "../src/state/StateStore.js"
import * as TempDir from "./utils/TempDir.js"

const put = (id: string, createdAt: number) =>
  Effect.flatMap(
    StateStore.StateStore,
    (store) =>
      store.putResponse({
        id,
        sessionKey: undefined,
        response: { id },
        inputItems: [],
        createdAt: Time.fromMillis(createdAt)
      })
  )
const exists = (id: string) =>
  Effect.flatMap(StateStore.StateStore, (store) => Effect.map(store.getResponse(id), Option.isSome))

/** A stand-in for a service with its own tables on the shared database (the task runner, say). */
class Tasks extends Context.Tag("test/Tasks")<Tasks, { readonly count: Effect.Effect<number> }>() {}
const tasksOnSql = Layer.effect(
  Tasks,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS test_tasks (id TEXT PRIMARY KEY)`.pipe(Effect.orDie)
    yield* sql`INSERT OR IGNORE INTO test_tasks (id) VALUES ('t1')`.pipe(Effect.orDie)
    return {
      count: sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM test_tasks`.pipe(
        Effect.map((rows) => rows[0]!.n),
        Effect.orDie
      )
    }
  })
)
const tasksInMemory = Layer.succeed(Tasks, { count: Effect.succeed(0) })

describe("Persistence", () => {
  it.scoped("retention prunes stored Responses past their age, periodically", () =>
    Effect.gen(function*() {
      const settings: Persistence.PersistenceSettings = {
        ...Persistence.defaults,
        mode: "memory",
        responseRetention: Duration.days(30),
        pruneInterval: Duration.days(1),
        // A 5-minute seen-id prune would run ~9,000 times over the 33 days this test moves the TestClock, each
        // wake-up a real macrotask: that alone took 36 s (and timed out under load).
        seenPruneInterval: Duration.days(1)
      }
      const context = yield* Layer.build(Persistence.layer(settings))
      yield* Effect.provide(
        Effect.gen(function*() {
          yield* put("old", 0)
          yield* put("recent", Duration.toMillis(Duration.days(2)))
          yield* TestClock.adjust(Duration.days(29))
          assert.isTrue(yield* exists("old"), "not expired yet")
          yield* TestClock.adjust(Duration.days(1))
          yield* TestClock.adjust(Duration.days(1))
          assert.isFalse(yield* exists("old"), "expired after 30 days")
          assert.isTrue(yield* exists("recent"))
          yield* TestClock.adjust(Duration.days(2))
          assert.isFalse(yield* exists("recent"))
        }),
        context
      )
    }))

  it.scoped("sqlite mode: stores and extra services share the database in the state dir", () =>
    Effect.gen(function*() {
      const stateDir = Path.join(yield* TempDir.make(), "state")
      const settings: Persistence.PersistenceSettings = { ...Persistence.defaults, stateDir }
      const layer = Persistence.layerWith(settings, { sqlite: tasksOnSql, memory: tasksInMemory, postgres: tasksOnSql })
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          yield* put("r", 1)
          const checkpoints = yield* CheckpointStore.CheckpointStore
          yield* checkpoints.save("telegram:1", "flow", "c", new Uint8Array([1]))
          assert.strictEqual(yield* Effect.flatMap(Tasks, (t) => t.count), 1)
          assert.strictEqual((yield* Persistence.Persistence).mode, "sqlite")
        }),
        layer
      ))
      assert.isTrue(Fs.existsSync(Path.join(stateDir, "state.db")))
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          assert.isTrue(yield* exists("r"))
          const checkpoints = yield* CheckpointStore.CheckpointStore
          assert.isTrue(Option.isSome(yield* checkpoints.latest("telegram:1", "flow")))
        }),
        layer
      ))
    }))

  it.scoped("memory mode writes nothing; a checkpoint dir puts checkpoints on files", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const checkpointDir = Path.join(dir, "checkpoints")
      const settings: Persistence.PersistenceSettings = {
        ...Persistence.defaults,
        mode: "memory",
        stateDir: Path.join(dir, "state"),
        checkpointDir: Option.some(checkpointDir)
      }
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          yield* put("r", 1)
          const checkpoints = yield* CheckpointStore.CheckpointStore
          yield* checkpoints.save("telegram:1", "flow", "c", new Uint8Array([1]))
          assert.strictEqual(yield* Effect.flatMap(Tasks, (t) => t.count), 0)
        }),
        Persistence.layerWith(settings, { sqlite: tasksOnSql, memory: tasksInMemory, postgres: tasksOnSql })
      ))
      assert.deepStrictEqual(Fs.readdirSync(dir), ["checkpoints"])
      assert.deepStrictEqual(Fs.readdirSync(checkpointDir), ["telegram:1"])
    }))
})
