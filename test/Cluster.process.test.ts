/**
 * The cluster failure test: three runner processes (test/fixtures/clusterHost.ts) on loopback against the run's
 * Postgres, a bounded load of turns (each pushing its reply to a fake destination) spread over them, and one runner
 * killed with SIGKILL mid-load. Asserted: its shards move to the others within the configured time (every key
 * answers again), an in-flight turn fails only with a clear 503 (or the connection to the killed runner breaks),
 * every acknowledged turn is in the shared history, every acknowledged turn's push is delivered, and no push is
 * delivered twice beyond the ones in flight on the killed runner (the documented crash window). Beside that load,
 * Responses chains (`store: true`, each `previous_response_id` the chain's last acknowledged response) run over
 * all three: after the kill every acknowledged response is retrievable from a survivor, and every chain continues
 * on a survivor with its history.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Redacted, Ref } from "effect"
import * as Http from "node:http"
import * as ClusterRunners from "./utils/ClusterRunners.js"
import * as Postgres from "./utils/Postgres.js"

const KEYS = 24
// Concurrent `say` turns (each pushes); also the bound on duplicate pushes.
const CONCURRENCY = 6
// Concurrent Responses chains.
const CHAINS = 2
const { LOCK_SECONDS, REFRESH_MILLIS } = ClusterRunners
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

interface Answer {
  readonly status: number | "connection"
  readonly body: string
}

const request = (url: string, method: "GET" | "POST", body?: unknown) =>
  Effect.promise(async (): Promise<Answer> => {
    try {
      const r = await fetch(url, {
        method,
        headers: { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000)
      })
      return { status: r.status, body: await r.text() }
    } catch (e) {
      return { status: "connection", body: String(e) }
    }
  })

/** One Responses conversation: the responses acknowledged (in order) and every attempt made. */
interface Chain {
  readonly acked: Array<{ readonly id: string; readonly runner: number }>
  attempts: number
  readonly failures: Array<Answer & { readonly runner: number }>
}

// The default agent says which turn of the conversation it answers.
const turnOf = (body: string) => Number(/This is turn (\d+) of this conversation/.exec(body)?.[1] ?? NaN)

describe("cluster: a runner killed mid-load", () => {
  it.live(
    "its shards move, in-flight turns fail clearly, nothing acknowledged is lost, pushes once",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* Postgres.database
        const fake = yield* fakeDestination
        const runners = yield* ClusterRunners.start(3, databaseUrl, {
          FAKE_URL: fake.url,
          // The agent counts a chain's turns from the history it sees: the default window (200 messages) would cap
          // the count at 101 on a fast run, below the acknowledged turns the test checks for.
          AGENT_HOST_HISTORY_LIMIT: "100000"
        })

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
        const steps = yield* Ref.make(0)
        const chains: Array<Chain> = Array.from({ length: CHAINS }, () => ({ acked: [], attempts: 0, failures: [] }))
        const chainStep = (c: number, runner: number) =>
          Effect.gen(function*() {
            const chain = chains[c]!
            const n = yield* Ref.getAndUpdate(steps, (x) => x + 1)
            const last = chain.acked.at(-1)
            chain.attempts++
            const answer = yield* request(`${runners[runner]!.url}/v1/responses`, "POST", {
              input: `chain ${c} step ${n}`,
              store: true,
              ...(last === undefined ? {} : { previous_response_id: last.id })
            })
            if (answer.status === 200) chain.acked.push({ id: String(JSON.parse(answer.body).id), runner })
            else chain.failures.push({ ...answer, runner })
          })
        // Each chain begins on the runner that will be killed, before the load: some of what it acknowledged must
        // be found on the survivors.
        const victim = 2
        for (let c = 0; c < CHAINS; c++) yield* chainStep(c, victim)
        assert.deepStrictEqual(chains.map((c) => c.acked.length), chains.map(() => 1), "each chain's first response")
        const chainWorker = (c: number) =>
          Effect.gen(function*() {
            const chain = chains[c]!
            while (true) {
              const live = [0, 1, 2].filter((i) => alive[i])
              // Round robin per chain: each chain's responses are made on every runner in turn.
              yield* chainStep(c, live[(chain.attempts + c) % live.length]!)
            }
          })
        const load = yield* Effect.forkScoped(
          Effect.all([
            Effect.forEach(Array.from({ length: CONCURRENCY }, (_, w) => w), worker, {
              concurrency: "unbounded",
              discard: true
            }),
            Effect.forEach(Array.from({ length: CHAINS }, (_, c) => c), chainWorker, {
              concurrency: "unbounded",
              discard: true
            })
          ], { concurrency: "unbounded", discard: true })
        )
        yield* Effect.sleep(Duration.seconds(3))
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

        // Responses: a failure is the connection to the killed runner, or a 503 from a survivor.
        for (const f of chains.flatMap((c) => c.failures)) {
          if (f.status === "connection") {
            assert.strictEqual(f.runner, victim, `a connection failure on a survivor: ${f.body}`)
            continue
          }
          assert.strictEqual(f.status, 503, f.body)
        }
        const survivors = [0, 1, 2].filter((i) => i !== victim)
        const responses = chains.flatMap((c) => c.acked)
        yield* Effect.log(
          `responses acknowledged ${responses.length} (${
            responses.filter((r) => r.runner === victim).length
          } by the killed runner), failed ${chains.reduce((n, c) => n + c.failures.length, 0)}`
        )
        assert.isAbove(
          responses.filter((r) => r.runner === victim).length,
          0,
          "the killed runner acknowledged some responses"
        )
        // Every acknowledged response is retrievable from a survivor (stored in Postgres before it was answered).
        const missing: Array<string> = []
        for (const [i, r] of responses.entries()) {
          const got = yield* request(`${runners[survivors[i % 2]!]!.url}/v1/responses/${r.id}`, "GET")
          if (got.status !== 200 || JSON.parse(got.body).id !== r.id || JSON.parse(got.body).status !== "completed") {
            missing.push(`${r.id}: ${got.status} ${got.body.slice(0, 200)}`)
          }
        }
        assert.deepStrictEqual(missing, [], "acknowledged responses not retrievable from a survivor")
        // Every chain continues on a survivor from its last acknowledged response, with its history: the agent
        // counts at least the acknowledged turns (at most every attempt: a failed turn may have kept its input).
        const continued: Array<string> = []
        for (const [c, chain] of chains.entries()) {
          const last = chain.acked.at(-1)
          assert.isDefined(last, `chain ${c} has acknowledged responses`)
          const next = yield* request(`${runners[survivors[c % 2]!]!.url}/v1/responses`, "POST", {
            input: `chain ${c} after the kill`,
            store: true,
            previous_response_id: last!.id
          })
          assert.strictEqual(next.status, 200, next.body)
          const turn = turnOf(next.body)
          assert.isAtLeast(turn, chain.acked.length + 1, next.body)
          assert.isAtMost(turn, chain.attempts + 1, next.body)
          continued.push(`turn ${turn} (acknowledged ${chain.acked.length}, attempts ${chain.attempts})`)
        }
        yield* Effect.log(`chains continued on survivors: ${continued.join(", ")}`)
      }).pipe(Effect.scoped),
    { timeout: 240_000 }
  )
})
