/**
 * How the host persists: settings from config, the layer that provides `StateStore` and `CheckpointStore` (SQLite
 * in the state dir by default, memory when `AGENT_HOST_STATE=memory`), and retention: a scoped fiber that prunes
 * expired records periodically (`pruneEvery`, reusable for other tables such as finished tasks).
 *
 * Services that want the same database (durable task runner, workflow engine) are built by `layerWith`, so they
 * share the one connection and the one owner lock: building `StateDb.layer` twice would lock the dir twice.
 */
import type { SqlClient } from "@effect/sql"
import type { ConfigError, Scope } from "effect"
import { Cause, Config, Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import * as Time from "../domain/Time.js"
import * as CheckpointStore from "./CheckpointStore.js"
import * as SqliteCheckpointStore from "./sqlite/SqliteCheckpointStore.js"
import * as SqliteStateStore from "./sqlite/SqliteStateStore.js"
import * as StateDb from "./sqlite/StateDb.js"
import type * as StateWriter from "./sqlite/StateWriter.js"
import * as StateStore from "./StateStore.js"

export interface PersistenceSettings {
  /** `sqlite`: everything in `<stateDir>/state.db`; `memory`: nothing survives a restart. */
  readonly mode: "sqlite" | "memory"
  readonly stateDir: string
  /** When set, checkpoints go to files under this folder (one per isolation key) instead of the database. */
  readonly checkpointDir: Option.Option<string>
  /** Stored Responses older than this are deleted. */
  readonly responseRetention: Duration.Duration
  /** Finished task records older than this are deleted (by the task runner, with `pruneEvery`). */
  readonly taskRetention: Duration.Duration
  /** How often the pruning fibers run. */
  readonly pruneInterval: Duration.Duration
}

export class Persistence extends Context.Tag("effect-agent-host/Persistence")<Persistence, PersistenceSettings>() {}

export const defaults: PersistenceSettings = {
  mode: "sqlite",
  stateDir: "./.agent-host",
  checkpointDir: Option.none(),
  responseRetention: Duration.days(30),
  taskRetention: Duration.days(7),
  pruneInterval: Duration.hours(1)
}

export const config: Config.Config<PersistenceSettings> = Config.all({
  mode: Config.literal("sqlite", "memory")("AGENT_HOST_STATE").pipe(Config.withDefault(defaults.mode)),
  stateDir: Config.nonEmptyString("AGENT_HOST_STATE_DIR").pipe(Config.withDefault(defaults.stateDir)),
  checkpointDir: Config.option(Config.nonEmptyString("AGENT_HOST_CHECKPOINT_DIR")),
  responseRetention: Config.duration("AGENT_HOST_RESPONSE_RETENTION").pipe(
    Config.withDefault(defaults.responseRetention)
  ),
  taskRetention: Config.duration("AGENT_HOST_TASK_RETENTION").pipe(Config.withDefault(defaults.taskRetention)),
  pruneInterval: Config.duration("AGENT_HOST_PRUNE_INTERVAL").pipe(Config.withDefault(defaults.pruneInterval))
})

/**
 * Every `interval` (the first run at once), deletes what is older than `maxAge` with `prune(cutoff)`, which
 * returns how many records went; `cutoff` is `now - maxAge`, an `EpochMillis` like every stored time, so the
 * records' timestamps must be `EpochMillis` too. Runs until the scope closes; a failed run is logged and the next
 * one still runs.
 */
export const pruneEvery = <E, R>(options: {
  readonly name: string
  readonly maxAge: Duration.DurationInput
  readonly interval: Duration.DurationInput
  readonly prune: (olderThan: Time.EpochMillis) => Effect.Effect<number, E, R>
}): Effect.Effect<void, never, R | Scope.Scope> => {
  const once = Effect.gen(function*() {
    const now = yield* Time.now
    const removed = yield* options.prune(Time.minus(now, options.maxAge))
    if (removed > 0) yield* Effect.logInfo("pruned expired records").pipe(Effect.annotateLogs({ removed }))
  }).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.logError("pruning failed", cause)
    ),
    Effect.annotateLogs({ retention: options.name })
  )
  return Effect.asVoid(Effect.forkScoped(Effect.repeat(once, Schedule.spaced(options.interval))))
}

/** Prunes stored Responses past `responseRetention`. */
export const layerResponseRetention: Layer.Layer<never, never, StateStore.StateStore | Persistence> = Layer
  .scopedDiscard(
    Effect.gen(function*() {
      const store = yield* StateStore.StateStore
      const settings = yield* Persistence
      yield* pruneEvery({
        name: "responses",
        maxAge: settings.responseRetention,
        interval: settings.pruneInterval,
        prune: store.pruneResponses
      })
    })
  )

/** What `layerWith` adds for each mode: services on the shared database, or their in-memory stand-ins. */
export interface Extra<ROut, E> {
  readonly sqlite: Layer.Layer<ROut, E, SqlClient.SqlClient | StateWriter.StateWriter | Persistence>
  readonly memory: Layer.Layer<ROut, E, Persistence>
}

/** `StateStore`, `CheckpointStore` and `Persistence` as `settings` say, plus `extra` on the same database. */
export const layerWith = <ROut, E>(
  settings: PersistenceSettings,
  extra: Extra<ROut, E>
): Layer.Layer<
  StateStore.StateStore | CheckpointStore.CheckpointStore | Persistence | ROut,
  E | StateDb.StateDirLocked | StateDb.StateDirUnavailable
> => {
  const persistence = Layer.succeed(Persistence, settings)
  const checkpointsOnFiles = Option.map(settings.checkpointDir, CheckpointStore.layerFileSystem)
  const stores = settings.mode === "memory" ?
    Layer.mergeAll(
      StateStore.layerMemory,
      Option.getOrElse(checkpointsOnFiles, () => CheckpointStore.layerMemory),
      extra.memory
    ).pipe(Layer.provideMerge(persistence)) :
    Layer.mergeAll(
      SqliteStateStore.layerWithoutDb,
      Option.getOrElse(checkpointsOnFiles, () => SqliteCheckpointStore.layerWithoutDb),
      extra.sqlite
    ).pipe(
      Layer.provideMerge(persistence),
      Layer.provide(StateDb.layer({ directory: settings.stateDir }))
    )
  return Layer.provideMerge(layerResponseRetention, stores)
}

export const layer = (settings: PersistenceSettings) =>
  layerWith(settings, { sqlite: Layer.empty, memory: Layer.empty })

/** Persistence from config (`AGENT_HOST_STATE`, `AGENT_HOST_STATE_DIR`, retention settings). */
export const layerConfig: Layer.Layer<
  StateStore.StateStore | CheckpointStore.CheckpointStore | Persistence,
  ConfigError.ConfigError | StateDb.StateDirLocked | StateDb.StateDirUnavailable
> = Layer.unwrapEffect(Effect.map(config, layer))
