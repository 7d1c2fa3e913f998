/**
 * How the admin commands reach a state dir (`<dir>/state.db`, the SQLite database the host keeps):
 * - reads open the database read-only, without the owner lock: they work beside a running host (SQLite's WAL lets
 *   a reader see the last committed state) and never change the file;
 * - writes open it as the host does (`StateDb.layer`: the single-owner lock, then the migrations), so they refuse
 *   while a host owns the dir and meanwhile no host can start. While a host runs, its admin HTTP routes
 *   (`POST /admin/tasks/:id/replay`) are the way to change its state.
 * Only SQLite state is reached: memory state has nothing to administer, Postgres is administered with its tools.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Scope } from "effect"
import { Config, Effect, Layer, Option } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Persistence from "../state/Persistence.js"
import * as Migrations from "../state/sqlite/migrations/index.js"
import * as StateDb from "../state/sqlite/StateDb.js"
import type * as StateWriter from "../state/sqlite/StateWriter.js"
import { CliFailure } from "./CliErrors.js"

const errorText = (cause: unknown) =>
  typeof cause === "object" && cause !== null && "message" in cause ? String(cause.message) : String(cause)

/** The state dir: `--state-dir`, else `AGENT_HOST_STATE_DIR` (default `./.agent-host`), as the host reads it. */
export const resolveDir = (flag: Option.Option<string>): Effect.Effect<string, CliFailure> =>
  Option.match(flag, {
    onSome: (dir) => Effect.succeed(Path.resolve(dir)),
    onNone: () =>
      Config.nonEmptyString("AGENT_HOST_STATE_DIR").pipe(
        Config.withDefault(Persistence.defaults.stateDir),
        Effect.map((dir) => Path.resolve(dir)),
        Effect.mapError((e) => new CliFailure({ message: `configuration error: ${errorText(e)}` }))
      )
  })

export const databasePath = (dir: string) => Path.join(dir, StateDb.databaseFile)

const missing = (dir: string) =>
  new CliFailure({
    message: `no state database in ${dir} (${StateDb.databaseFile} does not exist): pass --state-dir or set ` +
      `AGENT_HOST_STATE_DIR to the host's state dir`
  })

/** The highest migration this version knows. */
export const knownMigration: Effect.Effect<number> = Migrations.loader.pipe(
  Effect.map((list) => Math.max(0, ...list.map(([id]) => id))),
  Effect.orDie
)

/** The highest migration applied to the database the client is on (0 for none). */
export const appliedMigration: Effect.Effect<number, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const table = yield* sql<{ readonly n: number }>`SELECT count(*) AS n FROM sqlite_master
    WHERE type = 'table' AND name = ${Migrations.table}`
  if ((table[0]?.n ?? 0) === 0) return 0
  const rows = yield* sql<{ readonly id: number | null }>`SELECT max(migration_id) AS id
    FROM ${sql(Migrations.table)}`
  return Number(rows[0]?.id ?? 0)
}).pipe(Effect.orDie)

/**
 * The database read-only, no lock taken (fails when there is none, or when its schema is older than this version
 * reads: `state migrate`, or starting the host, brings it up to date).
 */
export const readOnly = (dir: string): Effect.Effect<SqlClient.SqlClient, CliFailure, Scope.Scope> =>
  Effect.gen(function*() {
    const filename = databasePath(dir)
    if (!Fs.existsSync(filename)) return yield* missing(dir)
    const client = yield* SqliteClient.make({ filename, readonly: true, disableWAL: true }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.catchAllDefect((cause) => Effect.fail(cause)),
      Effect.mapError((cause) => new CliFailure({ message: `cannot open ${filename}: ${errorText(cause)}` }))
    )
    const [applied, known] = yield* Effect.all([
      Effect.provideService(appliedMigration, SqlClient.SqlClient, client),
      knownMigration
    ])
    if (applied < known) {
      return yield* new CliFailure({
        message: `${filename} is at schema version ${applied}, this version reads ${known}: run ` +
          `\`effect-agent-host state migrate\` (or start the host) first`
      })
    }
    return client as SqlClient.SqlClient
  })

/** What a write sees: the database as the host opens it. */
export type Writable = StateDb.StateDir | SqlClient.SqlClient | SqliteClient.SqliteClient | StateWriter.StateWriter

/**
 * The database as the host opens it (owner lock, migrations applied), for commands that change it. Refuses when a
 * host (or another command) owns the dir, and, unless `create`, when there is no database yet.
 */
export const writable = (dir: string, options: { readonly create?: boolean } = {}): Layer.Layer<Writable, CliFailure> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      if (options.create !== true && !Fs.existsSync(databasePath(dir))) return yield* missing(dir)
      return StateDb.layer({ directory: dir }).pipe(
        Layer.catchAll((error) =>
          Layer.fail(
            error._tag === "StateDirLocked" ?
              new CliFailure({
                message:
                  `state dir ${error.directory} is in use by ${
                    error.pid === undefined ? "a running host" : `a running host (pid ${error.pid})`
                  }: stop it first (read-only commands work beside it; while it runs, change its tasks through ` +
                  `its admin HTTP routes, POST /admin/tasks/:id/replay or /cancel)`
              }) :
              new CliFailure({ message: error.message })
          )
        )
      )
    })
  )
