/**
 * Hosts starting together on a new Postgres database: each creates or migrates the same tables (the host's
 * migrations, `@effect/cluster`'s message and runner storage). Their check-then-create set-up races (one host fails
 * with "already exists") unless they take turns, as `MigrationLock` makes them: here several hosts' set-ups run at
 * once on a fresh database, a few times over, and every one of them succeeds with the tables in place.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Cluster from "../src/cluster/Cluster.js"
import * as PgDb from "../src/state/postgres/PgDb.js"
import * as Postgres from "./utils/Postgres.js"

const HOSTS = 6
const ROUNDS = 3

const tables = (url: string) =>
  Effect.scoped(Effect.flatMap(
    PgClient.make({ url: Redacted.make(url), maxConnections: 1 }),
    (sql) =>
      sql<{ readonly name: string }>`
        SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'
      `
  )).pipe(Effect.provide(Reactivity.layer), Effect.orDie, Effect.map((rows) => rows.map((r) => r.name)))

describe("Postgres set-up by hosts starting together", () => {
  it.scoped("the host's migrations: every host's run succeeds", () =>
    Effect.gen(function*() {
      for (let round = 0; round < ROUNDS; round++) {
        const url = yield* Postgres.database
        const runs = yield* Effect.all(
          Array.from({ length: HOSTS }, () =>
            Effect.either(Effect.scoped(PgDb.make({ url: Redacted.make(url), maxConnections: 2 })))),
          { concurrency: "unbounded" }
        )
        const failed = runs.flatMap((r) =>
          r._tag === "Left" ? [r.left.message] : []
        )
        assert.deepStrictEqual(failed, [], `round ${round}`)
        const names = yield* tables(url)
        for (const table of ["agent_host_migrations", "chat_history", "agent_host_tasks", "seen_ids"]) {
          assert.include(names, table)
        }
      }
    }), { timeout: 60_000 })

  it.scoped("the cluster's storage: every runner's build succeeds", () =>
    Effect.gen(function*() {
      for (let round = 0; round < ROUNDS; round++) {
        const url = yield* Postgres.database
        const storage = Cluster.layerStorage.pipe(
          Layer.provide(ShardingConfig.layer({})),
          Layer.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 3 }))
        )
        const builds = yield* Effect.all(
          Array.from({ length: HOSTS }, () => Effect.either(Effect.scoped(Layer.build(storage)))),
          { concurrency: "unbounded" }
        )
        const failed = builds.flatMap((r) => r._tag === "Left" ? [String(r.left)] : [])
        assert.deepStrictEqual(failed, [], `round ${round}`)
        const names = yield* tables(url)
        for (const table of ["cluster_runners", "cluster_messages"]) assert.include(names, table)
      }
    }), { timeout: 60_000 })
})
