/**
 * How the host persists: settings from config, the layer that provides `StateStore`, `CheckpointStore` and
 * `ConversationStore` (SQLite in the state dir by default, memory when `AGENT_HOST_STATE=memory`, Postgres at
 * `DATABASE_URL` when `AGENT_HOST_STATE=postgres` or `AGENT_HOST_CLUSTER=postgres`), and retention: a scoped fiber
 * that prunes expired records periodically (`pruneEvery`, reusable for other tables such as finished tasks).
 *
 * Services that want the same database (durable task runner, workflow engine) are built by `layerWith`, so they
 * share the one connection and the one owner lock: building `StateDb.layer` twice would lock the dir twice.
 * The Postgres stores (and @effect/sql-pg, pg) are imported only in postgres mode, so SQLite cold start is unchanged.
 */
import type { SqlClient } from "@effect/sql"
import type { Scope } from "effect"
import {
  Cause,
  Config,
  ConfigError,
  Context,
  Duration,
  Effect,
  Either,
  Layer,
  Option,
  Redacted,
  Schedule
} from "effect"
import * as Time from "../domain/Time.js"
import * as CheckpointStore from "./CheckpointStore.js"
import * as ConversationStore from "./ConversationStore.js"
import type * as PgDb from "./postgres/PgDb.js"
import * as SqliteCheckpointStore from "./sqlite/SqliteCheckpointStore.js"
import * as SqliteConversationStore from "./sqlite/SqliteConversationStore.js"
import * as SqliteStateStore from "./sqlite/SqliteStateStore.js"
import * as StateDb from "./sqlite/StateDb.js"
import type * as StateWriter from "./sqlite/StateWriter.js"
import { StateHealth } from "./StateHealth.js"
import * as StateStore from "./StateStore.js"

export interface PersistenceSettings {
  /**
   * `sqlite`: everything in `<stateDir>/state.db`; `memory`: nothing survives a restart; `postgres`: everything
   * in the database at `databaseUrl`.
   */
  readonly mode: "sqlite" | "memory" | "postgres"
  readonly stateDir: string
  /** `DATABASE_URL`: set (and checked to be a postgres:// URL) in postgres mode only. */
  readonly databaseUrl: Option.Option<Redacted.Redacted<string>>
  /** When set, checkpoints go to files under this folder (one per isolation key) instead of the database. */
  readonly checkpointDir: Option.Option<string>
  /** Stored Responses older than this are deleted. */
  readonly responseRetention: Duration.Duration
  /** Finished task records older than this are deleted (by the task runner, with `pruneEvery`). */
  readonly taskRetention: Duration.Duration
  /** How often the pruning fibers run. */
  readonly pruneInterval: Duration.Duration
  /**
   * How often expired seen ids (webhook dedupe, link states) are pruned. Shorter than `pruneInterval`: the ids
   * arrive at message rate, and the memory store is bounded by this pruning alone.
   */
  readonly seenPruneInterval: Duration.Duration
}

export class Persistence extends Context.Tag("effect-agent-host/Persistence")<Persistence, PersistenceSettings>() {}

export const defaults: PersistenceSettings = {
  mode: "sqlite",
  stateDir: "./.agent-host",
  databaseUrl: Option.none(),
  checkpointDir: Option.none(),
  responseRetention: Duration.days(30),
  taskRetention: Duration.days(7),
  pruneInterval: Duration.hours(1),
  seenPruneInterval: StateStore.defaultSeenPrune.interval
}

/**
 * `AGENT_HOST_STATE`, where `AGENT_HOST_CLUSTER=postgres` implies (and requires) `postgres`: a cluster's runners
 * share their state through the database.
 */
const modeConfig = Config.all({
  state: Config.option(Config.literal("sqlite", "memory", "postgres")("AGENT_HOST_STATE")),
  cluster: Config.option(Config.string("AGENT_HOST_CLUSTER"))
}).pipe(
  Config.mapOrFail(({ cluster, state }): Either.Either<PersistenceSettings["mode"], ConfigError.ConfigError> => {
    const clustered = Option.isSome(cluster) && cluster.value.trim().toLowerCase() === "postgres"
    if (!clustered) return Either.right(Option.getOrElse(state, () => defaults.mode))
    if (Option.isSome(state) && state.value !== "postgres") {
      return Either.left(ConfigError.InvalidData(
        ["AGENT_HOST_STATE"],
        `is ${state.value}, but AGENT_HOST_CLUSTER=postgres keeps state in Postgres: unset AGENT_HOST_STATE or ` +
          `set it to postgres`
      ))
    }
    return Either.right("postgres")
  })
)

const urlProblem = (raw: string): string | undefined => {
  let parsed: URL
  try {
    parsed = new URL(raw.trim())
  } catch {
    return "is not a URL; expected postgres://user:password@host:port/database"
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    return `has the scheme ${parsed.protocol.slice(0, 20)}; expected postgres://user:password@host:port/database`
  }
  if (parsed.hostname === "") return "names no host; expected postgres://user:password@host:port/database"
  return undefined
}

/** `DATABASE_URL` in postgres mode: required, and a postgres:// URL (never echoed: it may hold a password). */
const checkDatabaseUrl = (
  mode: PersistenceSettings["mode"],
  url: Option.Option<Redacted.Redacted<string>>
): Either.Either<Option.Option<Redacted.Redacted<string>>, ConfigError.ConfigError> => {
  if (mode !== "postgres") return Either.right(Option.none())
  const problem = Option.match(url, {
    onNone: () => "not set; postgres state needs postgres://user:password@host:port/database",
    onSome: (value) => urlProblem(Redacted.value(value))
  })
  return problem === undefined ? Either.right(url) : Either.left(ConfigError.InvalidData(["DATABASE_URL"], problem))
}

export const config: Config.Config<PersistenceSettings> = Config.all({
  mode: modeConfig,
  stateDir: Config.nonEmptyString("AGENT_HOST_STATE_DIR").pipe(Config.withDefault(defaults.stateDir)),
  checkpointDir: Config.option(Config.nonEmptyString("AGENT_HOST_CHECKPOINT_DIR")),
  responseRetention: Config.duration("AGENT_HOST_RESPONSE_RETENTION").pipe(
    Config.withDefault(defaults.responseRetention)
  ),
  taskRetention: Config.duration("AGENT_HOST_TASK_RETENTION").pipe(Config.withDefault(defaults.taskRetention)),
  pruneInterval: Config.duration("AGENT_HOST_PRUNE_INTERVAL").pipe(Config.withDefault(defaults.pruneInterval)),
  seenPruneInterval: Config.duration("AGENT_HOST_SEEN_PRUNE_INTERVAL").pipe(
    Config.withDefault(defaults.seenPruneInterval)
  ),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL"))
}).pipe(
  Config.mapOrFail((settings) =>
    Either.map(checkDatabaseUrl(settings.mode, settings.databaseUrl), (databaseUrl) => ({ ...settings, databaseUrl }))
  )
)

/**
 * How long after it starts `pruneEvery` first prunes: off the startup path (a prune is a write, and a process's
 * first write costs a WAL header and its sync: ~4 ms of a start), yet soon, so a short-lived process prunes too.
 */
export const firstPruneAfter = Duration.seconds(1)

/**
 * Every `interval` (the first run `firstPruneAfter` the start), deletes what is older than `maxAge` with
 * `prune(cutoff)`, which returns how many records went; `cutoff` is `now - maxAge`, an `EpochMillis` like every
 * stored time, so the records' timestamps must be `EpochMillis` too. Runs until the scope closes; a failed run is logged and the next
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
  return Effect.asVoid(
    Effect.forkScoped(
      Effect.zipRight(Effect.sleep(firstPruneAfter), Effect.repeat(once, Schedule.spaced(options.interval)))
    )
  )
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

/**
 * Prunes OpenAI Conversations not changed for `responseRetention` (counted from their last change, so a
 * conversation in use is kept; see docs/RESPONSES.md).
 */
export const layerConversationRetention: Layer.Layer<
  never,
  never,
  ConversationStore.ConversationStore | Persistence
> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const store = yield* ConversationStore.ConversationStore
    const settings = yield* Persistence
    yield* pruneEvery({
      name: "conversations",
      maxAge: settings.responseRetention,
      interval: settings.pruneInterval,
      prune: store.prune
    })
  })
)

const layerRetention = Layer.merge(layerResponseRetention, layerConversationRetention)

/** What `layerWith` adds for each mode: services on the shared database, or their in-memory stand-ins. */
export interface Extra<ROut, E> {
  readonly sqlite: Layer.Layer<ROut, E, SqlClient.SqlClient | StateWriter.StateWriter | Persistence>
  readonly memory: Layer.Layer<ROut, E, Persistence>
  /** On the Postgres pool (built only in postgres mode). */
  readonly postgres: Layer.Layer<ROut, E, SqlClient.SqlClient | Persistence>
}

/**
 * `StateStore`, `CheckpointStore`, `ConversationStore` and `Persistence` as `settings` say, plus `extra` on the
 * same database.
 */
export const layerWith = <ROut, E>(
  settings: PersistenceSettings,
  extra: Extra<ROut, E>
): Layer.Layer<
  StateStore.StateStore | CheckpointStore.CheckpointStore | ConversationStore.ConversationStore | Persistence | ROut,
  E | StateDb.StateDirLocked | StateDb.StateDirUnavailable | PgDb.StateDatabaseUnavailable
> => {
  const persistence = Layer.succeed(Persistence, settings)
  const seenPrune: StateStore.SeenPruneSettings = {
    ...StateStore.defaultSeenPrune,
    interval: settings.seenPruneInterval
  }
  const checkpointsOnFiles = Option.map(settings.checkpointDir, CheckpointStore.layerFileSystem)
  if (settings.mode === "postgres") {
    const stores = Layer.unwrapEffect(
      Effect.promise(() => import("./postgres/PgPersistence.js")).pipe(
        Effect.map((Pg) =>
          Layer.mergeAll(
            Pg.PgStateStore.layerWithoutDbWith(seenPrune),
            Pg.PgConversationStore.layerWithoutDb,
            Option.getOrElse(checkpointsOnFiles, () => Pg.PgCheckpointStore.layerWithoutDb),
            extra.postgres,
            // For readiness (the host finds it in context when present).
            Layer.effect(StateHealth, StateHealth)
          ).pipe(
            Layer.provideMerge(persistence),
            Layer.provide(Pg.PgDb.layer({ url: Option.getOrThrow(settings.databaseUrl) }))
          )
        )
      )
    )
    return Layer.provideMerge(layerRetention, stores)
  }
  if (settings.mode === "memory") {
    const stores = Layer.mergeAll(
      StateStore.layerMemoryWith(seenPrune),
      ConversationStore.layerMemory,
      Option.getOrElse(checkpointsOnFiles, () => CheckpointStore.layerMemory),
      extra.memory
    ).pipe(Layer.provideMerge(persistence))
    return Layer.provideMerge(layerRetention, stores)
  }
  // SQLite (the default): the database, then each store and `extra` on it, then retention, built in order in one
  // scope: what `mergeAll(stores).pipe(provideMerge(persistence), provide(StateDb.layer))` under the retention
  // builds, with ~20 fewer memoised layer builds on every start (docs/PERFORMANCE.md, cold start).
  return Layer.scopedContext(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const memoMap = yield* Layer.CurrentMemoMap
    const db = yield* Layer.buildWithMemoMap(StateDb.layer({ directory: settings.stateDir }), memoMap, scope)
    let out: Context.Context<any> = Context.make(Persistence, settings)
    // Each layer sees the database and what was built before it; its services join the output.
    const build = <A, E2, R>(layer: Layer.Layer<A, E2, R>) =>
      Effect.provide(Layer.buildWithMemoMap(layer, memoMap, scope), Context.merge(db, out)) as Effect.Effect<
        Context.Context<A>,
        E2
      >
    out = Context.merge(out, yield* build(SqliteStateStore.layerWithoutDbWith(seenPrune)))
    out = Context.merge(out, yield* build(SqliteConversationStore.layerWithoutDb))
    out = Context.merge(
      out,
      yield* build(Option.getOrElse(checkpointsOnFiles, () => SqliteCheckpointStore.layerWithoutDb))
    )
    out = Context.merge(out, yield* build(extra.sqlite))
    yield* build(layerResponseRetention)
    yield* build(layerConversationRetention)
    return out
  })) as Layer.Layer<
    StateStore.StateStore | CheckpointStore.CheckpointStore | ConversationStore.ConversationStore | Persistence | ROut,
    E | StateDb.StateDirLocked | StateDb.StateDirUnavailable
  >
}

export const layer = (settings: PersistenceSettings) =>
  layerWith(settings, { sqlite: Layer.empty, memory: Layer.empty, postgres: Layer.empty })

/** Persistence from config (`AGENT_HOST_STATE`, `AGENT_HOST_STATE_DIR`, `DATABASE_URL`, retention settings). */
export const layerConfig: Layer.Layer<
  StateStore.StateStore | CheckpointStore.CheckpointStore | ConversationStore.ConversationStore | Persistence,
  ConfigError.ConfigError | StateDb.StateDirLocked | StateDb.StateDirUnavailable | PgDb.StateDatabaseUnavailable
> = Layer.unwrapEffect(Effect.map(config, layer))
