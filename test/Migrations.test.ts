/**
 * The state database's migrations on real SQLite files (temp dirs): a new database gets every migration, one
 * migrated by an older host gets the rest, and a current one gets none (answered by one query, without the
 * migrator: every start after the first). A new state database is given the latest schema in one transaction
 * (`migrations/latest.ts`): exactly what the migrations build, with every migration recorded.
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
import * as LatestSchema from "../src/state/sqlite/migrations/latest.js"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
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

interface SchemaRow {
  readonly type: string
  readonly name: string
  readonly tbl_name: string
  readonly sql: string | null
}

/** What SQLite records of a database's schema, and the migrations recorded as applied. */
const schemaOf = (filename: string) => {
  const db = NativeSqlite.open(filename, { readonly: true })
  try {
    return {
      objects: db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").all() as Array<
        SchemaRow
      >,
      migrations: db.prepare(`SELECT migration_id, name FROM "${Migrations.table}" ORDER BY migration_id`).all()
    }
  } finally {
    db.close()
  }
}

/** The database the migrator alone builds in `dir`: every migration, one by one. */
const migratedByMigrator = (dir: string) =>
  Effect.gen(function*() {
    const filename = Path.join(dir, "migrated.db")
    yield* Migrator.make({})({ loader: Migrations.loader, table: Migrations.table }).pipe(
      Effect.provide(SqliteClient.layer({ filename })),
      Effect.orDie
    )
    return filename
  })

/** `LatestSchema.statements` as it should read for the database at `filename`: what to paste when it differs. */
const statementsOf = (filename: string) => {
  const db = NativeSqlite.open(filename, { readonly: true })
  try {
    const rows = db.prepare(
      "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name <> 'sqlite_sequence' ORDER BY rowid"
    ).all() as Array<{ readonly sql: string }>
    return rows.map((row) => `  \`${row.sql.replace(/[`\\]/g, "\\$&").replace(/\$\{/g, "\\${")}\``).join(",\n")
  } finally {
    db.close()
  }
}

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

  it.scoped("the latest schema is exactly what the migrations build, and records every migration", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const migrated = yield* migratedByMigrator(dir)
      const created = Path.join(dir, "created.db")
      assert.isTrue(LatestSchema.create(created))
      const expected = schemaOf(migrated)
      assert.deepStrictEqual(
        schemaOf(created),
        expected,
        `migrations/latest.ts is not what the migrations build: its statements should read\n${statementsOf(migrated)}`
      )
      assert.deepStrictEqual(
        expected.migrations.map((row) => (row as { readonly migration_id: number }).migration_id),
        all
      )
    }))

  it.scoped("the latest schema leaves a database that has tables to the migrator", () =>
    Effect.gen(function*() {
      const migrated = yield* migratedByMigrator(yield* TempDir.make())
      const before = schemaOf(migrated)
      assert.isFalse(LatestSchema.create(migrated))
      assert.deepStrictEqual(schemaOf(migrated), before)
    }))

  it.scoped("a new state dir gets the latest schema without the migrator; a reopened one is current", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const migrated = yield* migratedByMigrator(yield* TempDir.make())
      const first = yield* logged(Effect.scoped(StateDb.make({ directory: dir, checkpointer: false })))
      assert.notInclude(first.messages, "Migrations complete")
      const database = Path.join(dir, StateDb.databaseFile)
      assert.deepStrictEqual(schemaOf(database), schemaOf(migrated))
      // Reopened: nothing to apply (no migrator either), same schema.
      const again = yield* logged(Effect.scoped(StateDb.make({ directory: dir, checkpointer: false })))
      assert.notInclude(again.messages, "Migrations complete")
      assert.deepStrictEqual(schemaOf(database), schemaOf(migrated))
    }))
})
