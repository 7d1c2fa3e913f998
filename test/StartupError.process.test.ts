import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ServerProcess from "./utils/ServerProcess.js"

describe("npm start with a bad configuration", () => {
  it.scopedLive("prints one line naming the setting and exits 1, with no stack trace", () =>
    Effect.gen(function*() {
      const server = yield* ServerProcess.spawnServer({ AGENT_HOST_HISTORY_LIMIT: "lots" })
      yield* Effect.addFinalizer(() => server.kill("SIGKILL"))
      const code = yield* server.exited
      assert.strictEqual(code, 1)
      const lines = server.output().split("\n").filter((l) => l.trim() !== "")
      assert.deepStrictEqual(lines, [
        "configuration error: AGENT_HOST_HISTORY_LIMIT: Expected an integer value but received \"lots\""
      ])
    }), 120_000)
})
