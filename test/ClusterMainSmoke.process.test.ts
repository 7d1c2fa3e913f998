import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Postgres from "./utils/Postgres.js"
import * as ServerProcess from "./utils/ServerProcess.js"

describe("smoke", () => {
  it.live("npm start in cluster mode answers", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const server = yield* ServerProcess.start({
        AGENT_HOST_CLUSTER: "postgres",
        AGENT_HOST_STATE: "postgres",
        DATABASE_URL: url,
        AGENT_HOST_CLUSTER_RUNNER_PORT: String(yield* ServerProcess.freePort),
        AGENT_HOST_INVOCATIONS: "true"
      }).pipe(Effect.tapError((e) => Effect.sync(() => console.log("OUTPUT", (e as any).output))))
      const r = yield* Effect.promise(() =>
        fetch(`${server.url}/invocations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message: "hello", session_id: "s1" })
        }).then(async (r) => ({ status: r.status, body: await r.text() }))
      )
      console.log(r)
      assert.strictEqual(r.status, 200)
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
