/**
 * Cluster mode (`AGENT_HOST_CLUSTER=postgres`): this host is one runner of an `@effect/cluster` cluster whose
 * messages, runners and shard locks live in Postgres (`SqlMessageStorage`, `SqlRunnerStorage`, advisory locks), and
 * whose runners talk over their own socket RPC (`AGENT_HOST_CLUSTER_RUNNER_HOST`/`_PORT`, distinct from the HTTP
 * port). It is a Layer swap of the core: the same `Turns`, `Sessions` and channels, plus a `TurnRouter` that runs
 * each keyed turn on the runner owning its key (`SessionEntity`) and a `PushScheduler` of persisted messages
 * (`Pushes`). Loaded by `Server.ts` only when selected (dynamic import), so `npm start` loads none of it.
 */
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as ClusterRunners from "@effect/cluster/Runners"
import type * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import { layerClientProtocol, layerSocketServer } from "@effect/platform-node/NodeClusterSocket"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as PgClient from "@effect/sql-pg/PgClient"
import type { Redacted } from "effect"
import { Config, Duration, Layer, Option } from "effect"
import * as HostLayers from "../core/HostLayers.js"
import * as TaskRunner from "../delivery/TaskRunner.js"
import * as CheckpointStore from "../state/CheckpointStore.js"
import * as Persistence from "../state/Persistence.js"
import * as MigrationLock from "../state/postgres/MigrationLock.js"
import * as PgStateStore from "../state/postgres/PgStateStore.js"
import * as PushAdmin from "./PushAdmin.js"
import * as Pushes from "./Pushes.js"
import * as SessionEntity from "./SessionEntity.js"

export interface Options {
  readonly databaseUrl: Redacted.Redacted<string>
  /** The address other runners reach this one at (its cluster socket; not the HTTP port). */
  readonly runnerHost: string
  readonly runnerPort: number
  /** Where the cluster socket listens (default: the runner address). */
  readonly listenHost?: string
  /** Shards per group; the same on every runner (default 300). */
  readonly shards?: number
  /**
   * How long a runner that stopped heartbeating keeps its shards (default 10 seconds): a killed runner's sessions
   * and pushes move to the others within about this plus `refreshInterval`.
   */
  readonly lockExpiration?: Duration.DurationInput
  /** How often runners and shard assignments are re-read (default 1 second). */
  readonly refreshInterval?: Duration.DurationInput
  /** How often a runner looks in storage for persisted messages it was not told about (default 2 seconds). */
  readonly messagePollInterval?: Duration.DurationInput
  /**
   * Encode and decode messages to entities on this runner as if they crossed the network (default false): tests
   * turn it on so a one-runner cluster catches what a remote one would refuse; it costs a schema round trip of the
   * request and its outcome per local turn.
   */
  readonly simulateRemoteSerialization?: boolean
}

export const config: Config.Config<Options> = Config.all({
  databaseUrl: Config.redacted("DATABASE_URL"),
  runnerHost: Config.string("AGENT_HOST_CLUSTER_RUNNER_HOST").pipe(Config.withDefault("127.0.0.1")),
  runnerPort: Config.port("AGENT_HOST_CLUSTER_RUNNER_PORT").pipe(Config.withDefault(34431)),
  listenHost: Config.option(Config.string("AGENT_HOST_CLUSTER_LISTEN_HOST")),
  shards: Config.integer("AGENT_HOST_CLUSTER_SHARDS").pipe(
    Config.validate({ message: "must be 1 or more", validation: (n) => n >= 1 }),
    Config.withDefault(300)
  ),
  lockExpiration: Config.duration("AGENT_HOST_CLUSTER_LOCK_EXPIRATION").pipe(
    Config.withDefault(Duration.seconds(10))
  ),
  refreshInterval: Config.duration("AGENT_HOST_CLUSTER_REFRESH_INTERVAL").pipe(
    Config.withDefault(Duration.seconds(1))
  )
}).pipe(Config.map(({ listenHost, ...rest }) => ({
  ...rest,
  ...(Option.isSome(listenHost) ? { listenHost: listenHost.value } : {})
})))

/**
 * The sharding config, explicit: `ShardingConfig.layerFromEnv` would read `HOST`/`PORT`, which are the app's. The
 * lock is refreshed three times per expiration, so a live runner never loses its shards to a slow refresh.
 */
export const shardingConfig = (options: Options): Partial<ShardingConfig.ShardingConfig["Type"]> => {
  const expiration = Duration.decode(options.lockExpiration ?? Duration.seconds(10))
  const refresh = Duration.decode(options.refreshInterval ?? Duration.seconds(1))
  return {
    runnerAddress: Option.some(RunnerAddress.make({ host: options.runnerHost, port: options.runnerPort })),
    runnerListenAddress: options.listenHost === undefined ?
      Option.none() :
      Option.some(RunnerAddress.make({ host: options.listenHost, port: options.runnerPort })),
    shardsPerGroup: options.shards ?? 300,
    shardLockExpiration: expiration,
    shardLockRefreshInterval: Duration.millis(Math.max(100, Duration.toMillis(expiration) / 3)),
    refreshAssignmentsInterval: refresh,
    runnerHealthCheckInterval: Duration.times(refresh, 5),
    entityMessagePollInterval: options.messagePollInterval ?? Duration.seconds(2),
    entityReplyPollInterval: Duration.millis(200),
    sendRetryInterval: Duration.millis(100),
    entityTerminationTimeout: Duration.seconds(5),
    simulateRemoteSerialization: options.simulateRemoteSerialization ?? false
  }
}

/**
 * The cluster's message and runner storage on Postgres. Building them creates their tables (check, then create): one
 * host at a time (`MigrationLock`), or runners starting together on a new database fail with "already exists".
 */
export const layerStorage = Layer.scopedContext(
  MigrationLock.around(Layer.build(Layer.merge(SqlMessageStorage.layer, SqlRunnerStorage.layer)))
)

/**
 * Sharding over the runners' sockets with storage on Postgres: `@effect/platform-node`'s `NodeClusterSocket.layer`
 * composed by hand so the config is explicit (see `shardingConfig`). Its own pool: the runner storage reserves a
 * connection for the advisory shard locks, which Postgres drops when this process dies (kill -9 included).
 */
export const layerSharding = (
  options: Options
): Layer.Layer<Sharding.Sharding | ClusterRunners.Runners | MessageStorage.MessageStorage, unknown> =>
  Layer.provide(SocketRunner.layer, [layerSocketServer, layerClientProtocol]).pipe(
    Layer.provide(RunnerHealth.layerPing.pipe(
      Layer.provide(ClusterRunners.layerRpc),
      Layer.provide(layerClientProtocol)
    )),
    // Kept in the output: the workflow engine (`WorkflowTarget.layerEngineCluster`) journals in the same storage.
    Layer.provideMerge(Layer.orDie(layerStorage)),
    Layer.provide(ShardingConfig.layer(shardingConfig(options))),
    Layer.provide(RpcSerialization.layerMsgPack),
    Layer.provide(PgClient.layer({ url: options.databaseUrl, maxConnections: 8 }))
  )

/** This runner's address as a string: unique in the cluster, it tells a runner's own turns from forwarded ones. */
export const runnerId = (options: Options) => `${options.runnerHost}:${options.runnerPort}`

/**
 * Turns `core` (a layer building `Turns`, e.g. `HostLayers.layerCoreWith({ push: Pushes.layer })`) into a cluster
 * runner's core: it gets the `TurnRouter`, the session entity runs on its `Turns`, and one sharding instance serves
 * them all. What `core` needs of the cluster (`Sharding`, `MessageStorage`) comes from the same instance, so a
 * workflow target composed into it (`WorkflowTarget.layerEngineCluster`) runs its executions as entities of this
 * cluster.
 */
export const layerCore = <A, E, R>(
  options: Options,
  core: Layer.Layer<A, E, R>
) =>
  SessionEntity.layerEntity(runnerId(options)).pipe(
    Layer.provideMerge(core),
    Layer.provide(SessionEntity.layerRouter(runnerId(options))),
    Layer.provideMerge(layerSharding(options))
  )

/**
 * The shared state without `Persistence.layerWith` (tests): the Postgres `StateStore`, checkpoints in memory, stored
 * Responses pruned as on one node.
 */
export const layerState = (options: Options, settings: Persistence.PersistenceSettings) =>
  Persistence.layerResponseRetention.pipe(
    Layer.provideMerge(Layer.merge(
      Layer.orDie(PgStateStore.layer({ url: options.databaseUrl, maxConnections: 8 })),
      CheckpointStore.layerMemory
    )),
    Layer.provideMerge(Layer.succeed(Persistence.Persistence, settings))
  )

/**
 * A host (`AgentHost.layer(...)`) as one runner of the cluster: the cluster core (sessions as entities, pushes as
 * persisted messages). The admin task routes run over the push messages (`PushAdmin`); the task runner they would
 * otherwise use is an empty in-memory one.
 * Provide the target, the host config and the shared state (`Persistence` in postgres mode, or `layerState`).
 */
export const layerRunner = <A, E, R>(options: Options, host: Layer.Layer<A, E, R>) =>
  host.pipe(
    Layer.provide(PushAdmin.layer(options)),
    Layer.provideMerge(layerCore(options, HostLayers.layerCoreWith({ push: Pushes.layer }))),
    Layer.provideMerge(TaskRunner.layerMemory())
  )

export { Pushes, SessionEntity }
