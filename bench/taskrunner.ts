/**
 * TaskRunner throughput on SQLite (WAL, synchronous=NORMAL): schedules N no-op tasks and waits until all
 * succeeded. `npx tsx bench/taskrunner.ts [N]`.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Deferred, Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as TaskRunner from "../src/TaskRunner.js"

const n = Number(process.argv[2] ?? 20_000)
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-tasks-"))
const sqlite = Layer.effectDiscard(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`PRAGMA synchronous = NORMAL`)).pipe(
  Layer.provideMerge(SqliteClient.layer({ filename: Path.join(dir, "state.db") }))
)
const Noop = TaskRunner.define("bench.noop", Schema.Number)

const program = Effect.gen(function*() {
  const runner = yield* TaskRunner.TaskRunner
  const done = yield* Deferred.make<void>()
  let finished = 0
  yield* runner.register(Noop, () =>
    Effect.sync(() => {
      if (++finished === n) Deferred.unsafeDone(done, Effect.void)
    }))
  yield* runner.start
  const start = performance.now()
  yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => runner.schedule(Noop, i), {
    concurrency: 512,
    discard: true
  })
  const scheduled = performance.now()
  yield* Deferred.await(done)
  const end = performance.now()
  return `tasks: ${n}; scheduled in ${(scheduled - start).toFixed(0)} ms; all run in ${(end - start).toFixed(0)} ms; ${
    Math.round(n / ((end - start) / 1000))
  } tasks/s`
}).pipe(Effect.provide(TaskRunner.layerSqlite().pipe(Layer.provide(sqlite))), Effect.scoped)

Effect.runPromise(program).then((line) => console.log(line)).finally(() =>
  Fs.rmSync(dir, { recursive: true, force: true })
)
