/**
 * A cluster runner's options for a test in one process: the run's Postgres, loopback, 30 shards, and lock and
 * refresh times short enough for a test to see shards move.
 */
import { Duration, Redacted } from "effect"
import type * as Cluster from "../../src/cluster/Cluster.js"

export const make = (url: string, runnerPort: number, more: Partial<Cluster.Options> = {}): Cluster.Options => ({
  databaseUrl: Redacted.make(url),
  runnerHost: "127.0.0.1",
  runnerPort,
  shards: 30,
  lockExpiration: Duration.seconds(4),
  refreshInterval: Duration.millis(500),
  ...more
})
