/**
 * CPU per cluster turn without HTTP: one or two runners in this process (as test/Cluster.test.ts composes them) on a
 * private Postgres, the default agent as target, `Turns.run` driven directly. Prints CPU µs per turn of this process
 * (all runners) and of Postgres, from /proc.
 *   npx tsx bench/probes/ClusterTurns.ts [runners=1] [turns=2000] [concurrency=8] [keys=fresh|<n>] [mode=cluster|single]
 */
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import * as Cluster from "../../src/cluster/Cluster.js"
import * as AgentHost from "../../src/core/AgentHost.js"
import * as DefaultAgent from "../../src/core/DefaultAgent.js"
import * as HostConfig from "../../src/core/HostConfig.js"
import * as HostLayers from "../../src/core/HostLayers.js"
import { Turns } from "../../src/core/Turns.js"
import * as DurablePush from "../../src/delivery/DurablePush.js"
import type { IsolationKey } from "../../src/domain/Ids.js"
import { userMessage } from "../../src/domain/Message.js"
import * as PgStateStore from "../../src/state/postgres/PgStateStore.js"
import * as PostgresServer from "../../test/utils/PostgresServer.js"
import { createDatabase, freePort, postgresCpuSeconds, tempDir } from "../lib/Processes.js"

const [runnersArg = "1", turnsArg = "2000", concArg = "8", keysArg = "fresh", mode = "cluster"] = process.argv.slice(2)

const pgDir = tempDir("cluster-turns-pg")
const base = await PostgresServer.start(pgDir)
await createDatabase(PostgresServer.binDir()!, base, "b")
const url = Redacted.make(`${base}/b`)

const runner = (port: number) => {
  const options: Cluster.Options = {
    databaseUrl: url,
    runnerHost: "127.0.0.1",
    runnerPort: port,
    shards: 60,
    lockExpiration: Duration.seconds(4),
    refreshInterval: Duration.millis(500)
  }
  const host = <A, E, R>(core: Layer.Layer<A, E, R>) =>
    AgentHost.layer({ channels: [] }).pipe(
      Layer.provideMerge(core),
      Layer.provide(DefaultAgent.layer),
      Layer.provide(PgStateStore.layer({ url, maxConnections: 8 })),
      Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
    )
  const layer: Layer.Layer<Turns, unknown> = mode === "single" ?
    host(HostLayers.layerCoreWith({ push: DurablePush.layerMemory })) as never :
    host(Cluster.layerCore(options, HostLayers.layerCoreWith({ push: Cluster.Pushes.layer }))) as never
  return layer
}

const turns = Number(turnsArg)
const concurrency = Number(concArg)
const program = Effect.gen(function*() {
  const hosts: Array<Context.Context<Turns>> = []
  for (let i = 0; i < Number(runnersArg); i++) hosts.push(yield* Layer.build(runner(yield* Effect.promise(freePort))))
  yield* Effect.sleep(Duration.seconds(4))
  const once = (i: number) => {
    const key = keysArg === "fresh" ? `fresh-${i}-${Math.random()}` : `k${i % Number(keysArg)}`
    return Context.get(hosts[i % hosts.length]!, Turns).contextFor("invocations").run({
      channel: "invocations",
      operation: "invocations",
      input: [userMessage("hi")],
      session: { isolationKey: key as IsolationKey },
      stream: false
    })
  }
  yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), once, { concurrency, discard: true })
  const cpu0 = process.cpuUsage()
  const pg0 = postgresCpuSeconds(pgDir)
  const t0 = performance.now()
  yield* Effect.forEach(Array.from({ length: turns }, (_, i) => i + 1000), once, { concurrency, discard: true })
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const pg = postgresCpuSeconds(pgDir) - pg0
  process.stdout.write(
    JSON.stringify({
      mode,
      runners: hosts.length,
      keys: keysArg,
      turns,
      turnsPerSecond: Math.round(turns / wall),
      processCpuMicrosPerTurn: Math.round((cpu.user + cpu.system) / turns),
      postgresCpuMicrosPerTurn: Math.round((pg * 1e6) / turns)
    }) + "\n"
  )
})

try {
  await Effect.runPromise(Effect.scoped(program))
} finally {
  PostgresServer.stop(pgDir)
}
process.exit(0)
