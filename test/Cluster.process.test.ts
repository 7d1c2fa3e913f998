/**
 * The cluster failure test: three runner processes (test/fixtures/clusterHost.ts) on loopback against the run's
 * Postgres, a bounded load of turns (each pushing its reply to a fake destination) spread over them, and one runner
 * killed with SIGKILL mid-load. Asserted: its shards move to the others within the configured time (every key
 * answers again), an in-flight turn fails only with a clear 503 (or the connection to the killed runner breaks),
 * every acknowledged turn is in the shared history, every acknowledged turn's push is delivered, and no push is
 * delivered twice beyond the ones in flight on the killed runner (the documented crash window).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Redacted, Ref } from "effect"
import * as Http from "node:http"
import * as Postgres from "./utils/Postgres.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const KEYS = 24
const CONCURRENCY = 6
// Shard timing of the runners: a dead runner's shards move within about LOCK + REFRESH.
const LOCK_SECONDS = 4
const REFRESH_MILLIS = 500
// The bound asserted for the move: the lock expiry, two refreshes, and slack for a loaded 2-core machine.
const MOVE_BOUND_MILLIS = LOCK_SECONDS * 1000 + 2 * REFRESH_MILLIS + 8000

interface Pushed {
  readonly key: string
  readonly id: string
}

const fakeDestination = Effect.acquireRelease(
  Effect.async<{ url: string; received: Array<Pushed>; close: () => void }>((resume) => {
    const received: Array<Pushed> = []
    const server = Http.createServer((req, res) => {
      let body = ""
      req.on("data", (d: Buffer) => (body += d.toString()))
      req.on("end", () => {
        const { id, key } = JSON.parse(body) as { key: string; id: string }
        received.push({ key, id })
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      resume(Effect.succeed({
        url: `http://127.0.0.1:${port}/deliver`,
        received,
        close: () => {
          server.closeAllConnections()
          server.close()
        }
      }))
    })
  }),
  (fake) => Effect.sync(() => fake.close())
)

interface Sent {
  readonly runner: number
  readonly key: string
  readonly id: string
  readonly at: number
  readonly status: number | "connection"
  readonly body: string
}

const say = (url: string, key: string, id: string) =>
  Effect.promise(async (): Promise<{ status: number | "connection"; body: string }> => {
    try {
      const r = await fetch(`${url}/src/say`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key, id }),
        signal: AbortSignal.timeout(30_000)
      })
      return { status: r.status, body: await r.text() }
    } catch (e) {
      return { status: "connection", body: String(e) }
    }
  })

describe("cluster: a runner killed mid-load", () => {
  it.live(
    "its shards move, in-flight turns fail clearly, nothing acknowledged is lost, pushes once",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* Postgres.database
        const fake = yield* fakeDestination
        const runners = yield* Effect.forEach([0, 1, 2], () =>
          Effect.gen(function*() {
            const env = {
              DATABASE_URL: databaseUrl,
              FAKE_URL: fake.url,
              AGENT_HOST_CLUSTER_RUNNER_HOST: "127.0.0.1",
              AGENT_HOST_CLUSTER_RUNNER_PORT: String(yield* ServerProcess.freePort),
              AGENT_HOST_CLUSTER_SHARDS: "30",
              AGENT_HOST_CLUSTER_LOCK_EXPIRATION: `${LOCK_SECONDS} seconds`,
              AGENT_HOST_CLUSTER_REFRESH_INTERVAL: `${REFRESH_MILLIS} millis`,
              LOG_LEVEL: "warning"
            }
            const server = yield* ServerProcess.spawnServer(env, undefined, "test/fixtures/clusterHost.ts")
            yield* Effect.addFinalizer(() => server.kill("SIGKILL"))
            return server
          }))
        yield* Effect.forEach(runners, (r) => ServerProcess.awaitReady(r, 90_000), { concurrency: "unbounded" })
        // Every runner sees the others and the shard assignment settles.
        yield* Effect.sleep(Duration.millis(LOCK_SECONDS * 1000))

        const sent: Array<Sent> = []
        const alive = [true, true, true]
        const counter = yield* Ref.make(0)
        const worker = (w: number) =>
          Effect.gen(function*() {
            while (true) {
              const n = yield* Ref.getAndUpdate(counter, (c) => c + 1)
              const key = `key${n % KEYS}`
              const id = `t${n}`
              const live = [0, 1, 2].filter((i) => alive[i])
              const runner = live[(n + w) % live.length]!
              const at = yield* Clock.currentTimeMillis
              const reply = yield* say(runners[runner]!.url, key, id)
              sent.push({ runner, key, id, at, ...reply })
            }
          })
        const load = yield* Effect.forkScoped(
          Effect.forEach(Array.from({ length: CONCURRENCY }, (_, w) => w), worker, {
            concurrency: "unbounded",
            discard: true
          })
        )
        yield* Effect.sleep(Duration.seconds(3))
        const victim = 2
        alive[victim] = false
        const killedAt = yield* Clock.currentTimeMillis
        yield* runners[victim]!.kill("SIGKILL")
        // Load goes on against the two survivors until every key has answered after the kill (its shard moved), or
        // the bound.
        const answeredAfterKill = () =>
          new Set(sent.filter((s) => s.at > killedAt && s.status === 200).map((s) => s.key)).size
        while (answeredAfterKill() < KEYS && (yield* Clock.currentTimeMillis) - killedAt < MOVE_BOUND_MILLIS + 10_000) {
          yield* Effect.sleep(Duration.millis(100))
        }
        const movedIn = (yield* Clock.currentTimeMillis) - killedAt
        yield* Effect.sleep(Duration.seconds(1))
        yield* Fiber.interrupt(load)

        const acked = sent.filter((s) => s.status === 200)
        const failed = sent.filter((s) => s.status !== 200)
        yield* Effect.log(
          `turns sent ${sent.length}, acknowledged ${acked.length}, failed ${failed.length}; every key answered ` +
            `${movedIn} ms after the kill`
        )
        assert.strictEqual(answeredAfterKill(), KEYS, "every key answers again on the survivors")
        assert.isAtMost(movedIn, MOVE_BOUND_MILLIS, "the killed runner's shards moved within the configured time")
        assert.isAbove(acked.length, KEYS)
        // A failure is the connection to the killed runner breaking, or a clear 503 from a survivor.
        for (const f of failed) {
          if (f.status === "connection") {
            assert.strictEqual(f.runner, victim, `a connection failure on a survivor: ${f.body}`)
            continue
          }
          assert.strictEqual(f.status, 503, f.body)
          assert.match(f.body, /stopped before it finished|could not hand this turn|shutting down/, f.body)
        }

        // Every acknowledged turn is in the shared history: its input and the reply.
        const history = yield* Effect.scoped(Effect.flatMap(
          PgClient.make({ url: Redacted.make(databaseUrl), maxConnections: 1 }),
          (sql) => sql<{ readonly message: string }>`SELECT message FROM chat_history`
        )).pipe(Effect.provide(Reactivity.layer), Effect.orDie)
        const inputs = new Set(history.flatMap((row) => {
          const match = /message (t\d+)/.exec(row.message)
          return match === null ? [] : [match[1]!]
        }))
        const lostTurns = acked.filter((s) => !inputs.has(s.id)).map((s) => s.id)
        assert.deepStrictEqual(lostTurns, [], "acknowledged turns missing from the history")

        // Every acknowledged turn's push arrives (the new owner of a dead runner's shard redelivers), once except
        // for those in flight on the killed runner.
        const delivered = () => new Set(fake.received.map((p) => p.id))
        for (let i = 0; i < 300 && !acked.every((s) => delivered().has(s.id)); i++) {
          yield* Effect.sleep(Duration.millis(100))
        }
        const lostPushes = acked.filter((s) => !delivered().has(s.id)).map((s) => s.id)
        assert.deepStrictEqual(lostPushes, [], "acknowledged turns whose push never arrived")
        const counts = new Map<string, number>()
        for (const p of fake.received) counts.set(p.key, (counts.get(p.key) ?? 0) + 1)
        const duplicates = [...counts.values()].reduce((n, c) => n + c - 1, 0)
        yield* Effect.log(`pushes delivered ${fake.received.length}, duplicates ${duplicates}`)
        assert.isAtMost(duplicates, CONCURRENCY, "duplicates only for pushes in flight on the killed runner")
      }).pipe(Effect.scoped),
    { timeout: 240_000 }
  )
})
