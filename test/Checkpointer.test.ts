/**
 * WAL checkpoints in a worker thread (real SQLite in temp dirs, a real worker): the worker checkpoints and
 * restarts the WAL, stops (closing its connection) with the database's scope, and when it dies the failure is
 * logged and SQLite's own checkpoint comes back; a worker that does not keep up leaves the WAL bounded by the
 * raised `wal_autocheckpoint`. Live clock: the worker runs on its own thread and timers. That the bundle starts
 * it is test/Bundle.process.test.ts.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Logger, Schedule, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Checkpointer from "../src/state/sqlite/Checkpointer.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as StateWriter from "../src/state/sqlite/StateWriter.js"
import * as TempDir from "./utils/TempDir.js"

const megabyte = 1024 * 1024
const row = "x".repeat(8 * 1024)

/** The database in a fresh temp dir, open until `close`; log messages collected in `logs`. */
const openDb = (checkpointer: NonNullable<StateDb.Options["checkpointer"]>) =>
  Effect.gen(function*() {
    const directory = yield* TempDir.make()
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const logs: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => void logs.push(Array.isArray(message) ? message.join(" ") : String(message)))
    )
    const context = yield* Effect.orDie(
      Layer.buildWithScope(StateDb.layer({ directory, checkpointer }).pipe(Layer.provide(logger)), scope)
    )
    return {
      /** Megabytes written so far (for unique row names). */
      written: 0,
      wal: () => Fs.statSync(Path.join(directory, `${StateDb.databaseFile}-wal`), { throwIfNoEntry: false })?.size,
      logs,
      close: Scope.close(scope, Exit.void),
      writer: Context.get(context, StateWriter.StateWriter),
      sql: Context.get(context, SqlClient.SqlClient),
      checkpointer: Context.get(context, Checkpointer.Checkpointer)
    }
  })

type Db = Effect.Effect.Success<ReturnType<typeof openDb>>

/** `megabytes` commits of ~1 MB each; the largest WAL file seen after a commit. */
const writeMegabytes = (db: Db, megabytes: number, pause = Duration.zero) =>
  Effect.gen(function*() {
    let largest = 0
    const from = db.written
    db.written += megabytes
    for (let i = from; i < from + megabytes; i++) {
      yield* db.writer.write((statement) => {
        const insert = statement("INSERT INTO cursors (name, value) VALUES (?, ?)")
        for (let j = 0; j < megabyte / row.length; j++) insert.run(`c${i}-${j}`, row)
      })
      largest = Math.max(largest, db.wal() ?? 0)
      if (!Duration.isZero(Duration.decode(pause))) yield* Effect.sleep(pause)
    }
    return largest
  })

/** Polls `check` every 10 ms until it holds; fails the test after 10 s. */
const eventually = (what: string, check: Effect.Effect<boolean>) =>
  check.pipe(
    Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(Duration.millis(10)) }),
    Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error(`timed out waiting: ${what}`) }),
    Effect.orDie
  )

const autocheckpoint = (db: Db) =>
  Effect.map(
    Effect.orDie(db.sql<{ readonly wal_autocheckpoint: number }>`PRAGMA wal_autocheckpoint`),
    (rows) => rows[0]?.wal_autocheckpoint
  )

const writerAutocheckpoint = (db: Db) =>
  db.writer.write((statement) =>
    (statement("PRAGMA wal_autocheckpoint").get() as { wal_autocheckpoint: number })
      .wal_autocheckpoint
  )

describe("Checkpointer", () => {
  it.scopedLive("checkpoints in a worker and restarts the WAL; the main connections' bound is raised", () =>
    Effect.gen(function*() {
      const db = yield* openDb({ every: Duration.millis(10), startAfter: Duration.zero })
      yield* eventually("the worker opened its connection", Effect.map(db.checkpointer.stats, (s) => s.running))
      assert.strictEqual(yield* autocheckpoint(db), Checkpointer.autocheckpointPages)
      assert.strictEqual(yield* writerAutocheckpoint(db), Checkpointer.autocheckpointPages)

      const bound = Checkpointer.autocheckpointPages * 4096
      // Paced (as turns come): the worker copies as the WAL grows, and restarts it past 1 000 frames
      const paced = yield* writeMegabytes(db, 24, Duration.millis(20))
      assert.isAtLeast((yield* db.checkpointer.stats).checkpoints, 2)
      // In one burst: the WAL grows while the worker copies (the main connections' checkpoint gives way to it),
      // then the worker restarts it, holding the writers back if it passed the bound
      yield* writeMegabytes(db, 24)
      // Turns go on: the WAL file is soon cut back to the limit (the first commit after a restart does it)
      yield* eventually(
        "the WAL file back within the limit",
        Effect.map(writeMegabytes(db, 1), (size) => size <= Checkpointer.walSizeLimitBytes + megabyte)
      )
      assert.isAtLeast((yield* db.checkpointer.stats).restarts, 1)
      assert.isBelow(paced, bound, "paced")
      const stats = yield* db.checkpointer.stats
      assert.isFalse(stats.stopped)
    }))

  it.scopedLive("stops with the scope: the worker closes its connection before the database closes", () =>
    Effect.gen(function*() {
      const db = yield* openDb({ every: Duration.millis(10), startAfter: Duration.zero })
      yield* eventually("the worker opened its connection", Effect.map(db.checkpointer.stats, (s) => s.running))
      yield* writeMegabytes(db, 2)
      yield* db.close
      assert.isTrue((yield* db.checkpointer.stats).stopped)
      // SQLite deletes the WAL when the last connection to the database closes: the worker's had closed first.
      assert.isUndefined(db.wal())
      assert.notInclude(db.logs.join("\n"), "died")
    }))

  it.scopedLive("a worker that dies is logged, and SQLite's own checkpoint takes over: the WAL stays small", () =>
    Effect.gen(function*() {
      const db = yield* openDb({
        startAfter: Duration.zero,
        source: `throw new Error("checkpoint worker crash (test)")`
      })
      yield* eventually("the fallback", Effect.map(autocheckpoint(db), (pages) => pages === 1_000))
      assert.strictEqual(yield* writerAutocheckpoint(db), Checkpointer.defaultAutocheckpointPages)
      const stats = yield* db.checkpointer.stats
      assert.isTrue(stats.stopped)
      assert.isFalse(stats.running)
      assert.include(db.logs.join("\n"), "the WAL checkpoint worker died")

      const largest = yield* writeMegabytes(db, 16)
      // 1 000 pages (4 MB) and the commit that crossed them
      assert.isBelow(largest, 6 * megabyte)
    }))

  it.scopedLive("a worker that does not keep up: the WAL stays within the raised bound", () =>
    Effect.gen(function*() {
      // Alive but never checkpointing.
      const db = yield* openDb({
        startAfter: Duration.zero,
        source: `
          const { parentPort } = require("node:worker_threads")
          parentPort.postMessage("ready")
          parentPort.on("message", () => parentPort.close())
        `
      })
      yield* eventually("the worker started", Effect.map(db.checkpointer.stats, (s) => s.running))
      const largest = yield* writeMegabytes(db, 40)
      const bound = Checkpointer.autocheckpointPages * 4096
      assert.isAbove(largest, 8 * megabyte) // the raised bound, not SQLite's default
      assert.isBelow(largest, bound + 2 * megabyte)
    }))
})
