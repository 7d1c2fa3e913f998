import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Postgres from "./utils/Postgres.js"
import * as ServerProcess from "./utils/ServerProcess.js"

describe("npm start in cluster mode", () => {
  it.live(
    "the server started with AGENT_HOST_CLUSTER=postgres answers an Invocations turn",
    () =>
      Effect.gen(function*() {
        const url = yield* Postgres.database
        const server = yield* ServerProcess.start({
          AGENT_HOST_CLUSTER: "postgres",
          AGENT_HOST_STATE: "postgres",
          DATABASE_URL: url,
          AGENT_HOST_CLUSTER_RUNNER_PORT: String(yield* ServerProcess.freePort),
          AGENT_HOST_INVOCATIONS: "true"
        })
        const r = yield* Effect.promise(() =>
          fetch(`${server.url}/invocations`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message: "hello", session_id: "s1" })
          }).then(async (r) => ({ status: r.status, body: await r.text() }))
        )
        assert.strictEqual(r.status, 200, r.body)
        assert.isAbove(r.body.length, 0)
      }).pipe(Effect.scoped),
    { timeout: 120_000 }
  )
})
