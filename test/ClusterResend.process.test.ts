/**
 * A turn one runner forwards to the key's owner, which dies (kill -9) after beginning it: the cluster resends the
 * pending message to the shard's next owner. When that next owner is the runner that received the turn, it must
 * still find the turn begun elsewhere and refuse it (503), not run it a second time: the input would be in the
 * history twice, the agent called twice and the reply pushed twice. Two runner processes (test/fixtures/clusterHost.ts)
 * on one Postgres; a turn saying `slow` logs when it begins and takes seconds, so the kill lands mid-turn.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import * as ClusterRunners from "./utils/ClusterRunners.js"
import * as Postgres from "./utils/Postgres.js"
import type * as ServerProcess from "./utils/ServerProcess.js"

const BEGAN = "slow turn began"

const say = (url: string, key: string, id: string) =>
  Effect.promise(async () => {
    try {
      const r = await fetch(`${url}/src/say`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key, id })
      })
      return { status: r.status, body: await r.text() }
    } catch (e) {
      return { status: 0, body: String(e) }
    }
  })

const began = (server: ServerProcess.RunningServer) => server.output().split(BEGAN).length - 1

describe("cluster: the owner of a forwarded turn killed mid-turn", () => {
  it.live(
    "the resend that reaches the receiving runner is refused, not run again",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* Postgres.database
        const [a, b] = yield* ClusterRunners.start(2, databaseUrl, {
          FAKE_URL: "http://127.0.0.1:9/unused",
          SLOW_TURN_MILLIS: "4000"
        })

        // A slow turn received by A on a key B owns: B logs its beginning. A key A owns runs on A; try the next.
        let inFlight: Fiber.RuntimeFiber<{ status: number; body: string }> | undefined
        for (let i = 0; inFlight === undefined && i < 12; i++) {
          const beforeA = began(a!)
          const beforeB = began(b!)
          const turn = yield* Effect.fork(say(a!.url, `resend${i}`, `slow ${i}`))
          for (let w = 0; w < 100 && began(a!) === beforeA && began(b!) === beforeB; w++) {
            yield* Effect.sleep(Duration.millis(50))
          }
          if (began(b!) > beforeB) inFlight = turn
          else yield* Fiber.join(turn)
        }
        assert.isDefined(inFlight, "a slow turn received by A began on B")
        const onA = began(a!)
        yield* b!.kill("SIGKILL")

        // The shard moves to A (the only runner left); the cluster resends the pending turn there.
        const reply = yield* Fiber.join(inFlight!)
        assert.strictEqual(began(a!), onA, `the turn began again on A: ${reply.status} ${reply.body}`)
        assert.strictEqual(reply.status, 503, reply.body)
        assert.match(reply.body, /stopped before it finished|could not hand this turn/)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )
})
