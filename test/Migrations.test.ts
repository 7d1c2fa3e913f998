/**
 * The state database's migrations on real SQLite files (temp dirs): a new database gets every migration, one
 * migrated by an older host gets the rest, and a current one gets none (answered by one query, without the
 * migrator: every start after the first).
 */
import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel } from "effect"
import * as Path from "node:path"
import m0001 from "../src/state/sqlite/migrations/0001_state.js"
import m0002 from "../src/state/sqlite/migrations/0002_checkpoints.js"
import m0003 from "../src/state/sqlite/migrations/0003_epoch_millis.js"
import * as Migrations from "../src/state/sqlite/migrations/index.js"
import * as TempDir from "./utils/TempDir.js"

const recorded = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ readonly id: number }>`SELECT migration_id AS id FROM ${sql(Migrations.table)} ORDER BY migration_id`,
    (rows) => rows.map((row) => row.id)
  ))

const withDatabase = <A, E>(use: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.flatMap(
    TempDir.make(),
    (dir) => use.pipe(Effect.provide(SqliteClient.layer({ filename: Path.join(dir, "state.db") })), Effect.orDie)
  )

/** Runs `effect` with debug logging, collecting the messages logged (the migrator logs each migration and its end). */
const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const messages: Array<string> = []
    const collect = Logger.make(({ message }) => void messages.push(String(message)))
    const result = yield* effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, collect)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
    return { result, messages }
  })

const all = Array.from({ length: Migrations.latestId }, (_, i) => i + 1)

describe("state database migrations", () => {
  it.scoped("a new database gets every migration; run again, none", () =>
    withDatabase(Effect.gen(function*() {
      const first = yield* logged(Migrations.run)
      assert.deepStrictEqual(first.result.map(([id]) => id), all)
      assert.include(first.messages, "Migrations complete")
      // Current: answered without the migrator (it would log its end), twice in a row (a start, then the task
      // store's check).
      for (let i = 0; i < 2; i++) {
        const again = yield* logged(Migrations.run)
        assert.deepStrictEqual(again.result, [])
        assert.deepStrictEqual(again.messages, [])
      }
      assert.deepStrictEqual(yield* recorded, all)
    })))

  it.scoped("a database an older host migrated gets the migrations it lacks", () =>
    withDatabase(Effect.gen(function*() {
      const older = Migrator.make({})({
        loader: Migrator.fromRecord({ "0001_state": m0001, "0002_checkpoints": m0002, "0003_epoch_millis": m0003 }),
        table: Migrations.table
      })
      assert.deepStrictEqual((yield* older).map(([id]) => id), [1, 2, 3])
      const rest = yield* Migrations.run
      assert.deepStrictEqual(rest.map(([id]) => id), all.slice(3))
      assert.deepStrictEqual(yield* recorded, all)
      // The tables of the later migrations exist.
      const sql = yield* SqlClient.SqlClient
      const tables = yield* sql<{ readonly name: string }>`SELECT name FROM sqlite_master WHERE type = 'table'`
      assert.includeMembers(tables.map((t) => t.name), ["agent_host_tasks", "conversations"])
    })))
})
