/**
 * The group-commit writer on a real state database (temp dirs): concurrent writes share transactions, a failing
 * write fails alone, a database locked by another connection is waited for on timers (the event loop keeps
 * running) and given up on after the busy timeout, a full queue is backpressure, closing commits what is queued.
 * Durability across kill -9 is test/StateWriter.process.test.ts.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import * as Path from "node:path"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as StateWriter from "../src/state/sqlite/StateWriter.js"
import * as TempDir from "./utils/TempDir.js"

const insertCursor = (name: string, value: string): StateWriter.Step<void> => (statement) =>
  void statement("INSERT INTO cursors (name, value) VALUES (?, ?)").run(name, value)

const cursors = (directory: string): Array<string> => {
  const db = NativeSqlite.open(Path.join(directory, StateDb.databaseFile), { readonly: true })
  try {
    return (db.prepare("SELECT name FROM cursors ORDER BY name").all() as Array<{ readonly name: string }>)
      .map((row) => row.name)
  } finally {
    db.close()
  }
}

/** A state database in a fresh temp dir, open for the scope. */
const openDb = Effect.gen(function*() {
  const directory = yield* TempDir.make()
  const context = yield* Effect.orDie(Layer.build(StateDb.layer({ directory })))
  return {
    directory,
    writer: Context.get(context, StateWriter.StateWriter),
    sql: Context.get(context, SqlClient.SqlClient)
  }
})

const dieCode = (exit: Exit.Exit<unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const defect = Option.getOrUndefined(Cause.dieOption(exit.cause))
  return NativeSqlite.isSqliteError(defect) ? defect.code : String((defect as { _tag?: string })?._tag)
}

describe("StateWriter", () => {
  it.scoped("concurrent writes share transactions; each completes once committed", () =>
    Effect.gen(function*() {
      const { directory, writer } = yield* openDb
      const names = Array.from({ length: 100 }, (_, i) => `c${String(i).padStart(3, "0")}`)
      yield* Effect.forEach(names, (name) => writer.write(insertCursor(name, "v")), { concurrency: "unbounded" })
      // completed means committed: a separate connection sees every row
      assert.deepStrictEqual(cursors(directory), names)
      const stats = yield* writer.stats
      assert.strictEqual(stats.writes, 100)
      assert.isAtLeast(stats.commits, 1)
      assert.isBelow(stats.commits, 10)
      assert.strictEqual(stats.pending, 0)
    }))

  it.scoped("a write returns its step's result", () =>
    Effect.gen(function*() {
      const { writer } = yield* openDb
      const seen = (id: string) =>
        writer.write((statement) =>
          statement("INSERT INTO seen_ids (namespace, id) VALUES ('n', ?) ON CONFLICT DO NOTHING").run(id).changes
        )
      assert.deepStrictEqual(yield* Effect.all([seen("a"), seen("a"), seen("b")], { concurrency: "unbounded" }), [
        1,
        0,
        1
      ])
    }))

  it.scoped("a failing write fails alone, its partial changes undone; its batch neighbours commit", () =>
    Effect.gen(function*() {
      const { directory, writer } = yield* openDb
      const failing: StateWriter.Step<void> = (statement) => {
        statement("INSERT INTO cursors (name, value) VALUES (?, ?)").run("partial", "v")
        statement("INSERT INTO cursors (name, value) VALUES (?, ?)").run("broken", null)
      }
      const [first, bad, last] = yield* Effect.all([
        Effect.exit(writer.write(insertCursor("a", "v"))),
        Effect.exit(writer.write(failing)),
        Effect.exit(writer.write(insertCursor("b", "v")))
      ], { concurrency: "unbounded" })
      assert.isTrue(Exit.isSuccess(first))
      assert.isTrue(Exit.isSuccess(last))
      assert.strictEqual(dieCode(bad), "SQLITE_CONSTRAINT_NOTNULL")
      assert.deepStrictEqual(cursors(directory), ["a", "b"])
      const stats = yield* writer.stats
      assert.strictEqual(stats.commits, 1)
      assert.strictEqual(stats.failed, 1)
    }))

  it.scopedLive("waits for another connection's write transaction on timers, without stalling the event loop", () =>
    Effect.gen(function*() {
      const { directory, writer } = yield* openDb
      const other = NativeSqlite.open(Path.join(directory, StateDb.databaseFile))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec("BEGIN IMMEDIATE")
      other.prepare("INSERT INTO cursors (name, value) VALUES ('other', 'v')").run()
      const write = yield* Effect.fork(writer.write(insertCursor("mine", "v")))
      // A real timer: it can only fire if the event loop is not blocked by a synchronous busy wait.
      let ticks = 0
      const interval = setInterval(() => ticks++, 5)
      yield* Effect.sleep("150 millis")
      clearInterval(interval)
      assert.isAtLeast(ticks, 5)
      assert.isTrue(Option.isNone(yield* Fiber.poll(write)))
      assert.isAbove((yield* writer.stats).busyRetries, 0)
      other.exec("COMMIT")
      yield* Fiber.join(write)
      assert.deepStrictEqual(cursors(directory), ["mine", "other"])
    }))

  it.scopedLive("gives up after the busy timeout with StateDbBusy", () =>
    Effect.gen(function*() {
      const { directory, sql } = yield* openDb
      const writer = yield* StateWriter.make({
        filename: Path.join(directory, StateDb.databaseFile),
        sql,
        busyTimeout: "100 millis"
      })
      const other = NativeSqlite.open(Path.join(directory, StateDb.databaseFile))
      yield* Effect.addFinalizer(() => Effect.sync(() => other.close()))
      other.exec("BEGIN IMMEDIATE")
      const exit = yield* Effect.exit(writer.write(insertCursor("mine", "v")))
      other.exec("ROLLBACK")
      assert.strictEqual(dieCode(exit), "StateDbBusy")
      // the next write goes through
      yield* writer.write(insertCursor("later", "v"))
      assert.deepStrictEqual(cursors(directory), ["later"])
    }))

  it.scoped("a full queue is backpressure: every write still commits, in order", () =>
    Effect.gen(function*() {
      const { directory, sql } = yield* openDb
      const writer = yield* StateWriter.make({
        filename: Path.join(directory, StateDb.databaseFile),
        sql,
        maxPending: 4,
        maxBatch: 4
      })
      const names = Array.from({ length: 30 }, (_, i) => `c${String(i).padStart(2, "0")}`)
      const order: Array<string> = []
      yield* Effect.forEach(
        names,
        (name) =>
          writer.write((statement) => {
            order.push(name)
            insertCursor(name, "v")(statement)
          }),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(order, names)
      assert.deepStrictEqual(cursors(directory), names)
      assert.isAtLeast((yield* writer.stats).commits, 30 / 4)
    }))

  it.scoped("closing commits what is queued; later writes die with StateWriterClosed", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      const scope = yield* Scope.make()
      const context = yield* Effect.orDie(Layer.buildWithScope(StateDb.layer({ directory }), scope))
      const writer = Context.get(context, StateWriter.StateWriter)
      yield* writer.writeNoWait(insertCursor("a", "v"))
      yield* writer.writeNoWait(insertCursor("b", "v"))
      assert.strictEqual((yield* writer.stats).pending, 2)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(cursors(directory), ["a", "b"])
      assert.strictEqual(dieCode(yield* Effect.exit(writer.write(insertCursor("c", "v")))), "StateWriterClosed")
    }))

  it.scoped("refuses to write inside sql.withTransaction (the batch would wait for the transaction)", () =>
    Effect.gen(function*() {
      const { sql, writer } = yield* openDb
      const exit = yield* Effect.exit(Effect.orDie(sql.withTransaction(writer.write(insertCursor("a", "v")))))
      assert.strictEqual(dieCode(exit), "WriteInTransaction")
    }))
})
