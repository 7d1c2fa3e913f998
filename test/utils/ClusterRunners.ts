/**
 * Cluster runner processes for the process tests: `test/fixtures/clusterHost.ts` on the run's Postgres, loopback,
 * 30 shards and short lock and refresh times (a killed runner's shards move within about LOCK + REFRESH). They
 * are ready and have seen each other when `start` returns, and are killed (SIGKILL) when the scope closes.
 */
import { Duration, Effect } from "effect"
import * as ServerProcess from "./ServerProcess.js"

export const LOCK_SECONDS = 4
export const REFRESH_MILLIS = 500

/** `count` runners on `databaseUrl`, each with `env` added (FAKE_URL, the fixture's own settings). */
export const start = (count: number, databaseUrl: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const runners = yield* Effect.forEach(Array.from({ length: count }), () =>
      Effect.gen(function*() {
        const server = yield* ServerProcess.spawnServer(
          {
            DATABASE_URL: databaseUrl,
            AGENT_HOST_CLUSTER_RUNNER_HOST: "127.0.0.1",
            AGENT_HOST_CLUSTER_RUNNER_PORT: String(yield* ServerProcess.freePort),
            AGENT_HOST_CLUSTER_SHARDS: "30",
            AGENT_HOST_CLUSTER_LOCK_EXPIRATION: `${LOCK_SECONDS} seconds`,
            AGENT_HOST_CLUSTER_REFRESH_INTERVAL: `${REFRESH_MILLIS} millis`,
            LOG_LEVEL: "warning",
            ...env
          },
          undefined,
          "test/fixtures/clusterHost.ts"
        )
        yield* Effect.addFinalizer(() => server.kill("SIGKILL"))
        return server
      }))
    yield* Effect.forEach(runners, (r) => ServerProcess.awaitReady(r, 90_000), { concurrency: "unbounded" })
    // Every runner sees the others and the shard assignment settles.
    yield* Effect.sleep(Duration.seconds(LOCK_SECONDS))
    return runners
  })
