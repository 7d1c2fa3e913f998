/**
 * The host's SQLite database, `<stateDir>/state.db`: takes the single-owner lock on the state dir, opens the
 * database in WAL mode on one connection (the client serialises every statement through it), runs the host's
 * migrations (every host table, the task store's included), and provides `SqlClient`/`SqliteClient` so other
 * services (task store, workflow engine) share the same database, and `StateWriter` (a second, native connection)
 * for writes on hot paths, group-committed, and `Checkpointer` (WAL checkpoints in a worker thread, off the event
 * loop). The checkpointer stops first, then the writer: what it has queued is committed before the client closes.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Scope } from "effect"
import { Context, Duration, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Checkpointer from "./Checkpointer.js"
import * as Migrations from "./migrations/index.js"
import * as LatestSchema from "./migrations/latest.js"
import * as OwnerLock from "./OwnerLock.js"
import * as StateWriter from "./StateWriter.js"

export { StateDirLocked, StateDirUnavailable } from "./OwnerLock.js"

export const databaseFile = "state.db"

/** The state directory the database lives in (absolute). */
export class StateDir extends Context.Tag("effect-agent-host/StateDir")<StateDir, { readonly path: string }>() {}

export interface Options {
  readonly directory: string
  /**
   * WAL checkpoints: by a worker thread (`Checkpointer`; the default, `{}`, or its options), or `false` for
   * SQLite's automatic checkpoint inside commits, on the event loop.
   */
  readonly checkpointer?: false | Pick<Checkpointer.Options, "every" | "startAfter" | "source">
}

/** Opens the database; the lock is held and migrations are applied before the layer is built. */
export const make = (
  options: Options
): Effect.Effect<
  Context.Context<
    StateDir | SqlClient.SqlClient | SqliteClient.SqliteClient | StateWriter.StateWriter | Checkpointer.Checkpointer
  >,
  OwnerLock.StateDirLocked | OwnerLock.StateDirUnavailable,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const directory = Path.resolve(options.directory)
    yield* OwnerLock.acquire(directory)
    const unavailable = (reason: string) => (cause: unknown) =>
      new OwnerLock.StateDirUnavailable({
        directory,
        reason: `${reason}: ${cause instanceof Error ? cause.message : String(cause)}`
      })
    const filename = Path.join(directory, databaseFile)
    const checkpointer = options.checkpointer ?? {}
    // With the worker checkpointing, the main connections' automatic checkpoint is only the bound on the WAL.
    const autocheckpointPages = checkpointer === false ?
      Checkpointer.defaultAutocheckpointPages :
      Checkpointer.autocheckpointPages
    const walSizeLimitBytes = checkpointer === false ? -1 : Checkpointer.walSizeLimitBytes
    // No file yet: a new database, given the latest schema at once (see `LatestSchema`) rather than migrated; the
    // migrator then finds it current.
    const fresh = !Fs.existsSync(filename)
    const client = yield* SqliteClient.make({ filename }).pipe(
      Effect.provide(Reactivity.layer)
    )
    yield* Effect.all([
      // WAL + NORMAL is durable against process crashes (kill -9); only an OS crash can lose the last commits.
      client`PRAGMA synchronous = NORMAL`,
      client.unsafe(`PRAGMA busy_timeout = ${Duration.toMillis(StateWriter.busyTimeout)}`),
      client.unsafe(`PRAGMA wal_autocheckpoint = ${autocheckpointPages}`),
      client.unsafe(`PRAGMA journal_size_limit = ${walSizeLimitBytes}`)
    ]).pipe(Effect.mapError(unavailable("cannot configure the database")))
    if (fresh) {
      yield* Effect.try({
        try: () => void LatestSchema.create(filename),
        catch: unavailable("cannot create the database's tables")
      })
    }
    yield* Migrations.run.pipe(
      Effect.provideService(SqlClient.SqlClient, client),
      Effect.mapError(unavailable("cannot migrate the database"))
    )
    const writer = yield* StateWriter.make({ filename, sql: client, autocheckpointPages, walSizeLimitBytes }).pipe(
      Effect.mapError((error) => new OwnerLock.StateDirUnavailable({ directory, reason: error.message }))
    )
    // Made after the writer, so it stops before the writer's last flush and before the connections close.
    const checkpoints = checkpointer === false ?
      Checkpointer.Checkpointer.of({ stats: Effect.succeed(Checkpointer.notRunning) }) :
      yield* Checkpointer.make({ ...checkpointer, filename, onCrash: restoreAutocheckpoint(client, writer) })
    yield* Effect.logInfo("state database open").pipe(
      Effect.annotateLogs({ database: filename, pid: process.pid })
    )
    return Context.make(StateDir, { path: directory }).pipe(
      Context.add(SqlClient.SqlClient, client),
      Context.add(SqliteClient.SqliteClient, client),
      Context.add(StateWriter.StateWriter, writer),
      Context.add(Checkpointer.Checkpointer, checkpoints)
    )
  }).pipe(Effect.withSpan("StateDb.make"))

/** SQLite's default automatic checkpoint on both main connections: the fallback when the worker dies. */
const restoreAutocheckpoint = (client: SqliteClient.SqliteClient, writer: StateWriter.StateWriterShape) => {
  const pragma = `PRAGMA wal_autocheckpoint = ${Checkpointer.defaultAutocheckpointPages}`
  return Effect.all([client.unsafe(pragma), writer.write((statement) => statement(pragma).get())], {
    discard: true
  }).pipe(Effect.catchAllCause((cause) => Effect.logError("cannot restore wal_autocheckpoint", cause)))
}

/** The shared database in `directory`. */
export const layer = (
  options: Options
): Layer.Layer<
  StateDir | SqlClient.SqlClient | SqliteClient.SqliteClient | StateWriter.StateWriter | Checkpointer.Checkpointer,
  OwnerLock.StateDirLocked | OwnerLock.StateDirUnavailable
> => Layer.scopedContext(make(options))
