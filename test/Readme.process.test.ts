/**
 * The README's commands, run as a new user would: the real server as a process.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ServerProcess from "./utils/ServerProcess.js"

describe("README commands (the real server as a process)", () => {
  it.scopedLive(
    "AGENT_HOST_ALLOW=\"telegram:12345,webchat:*\" npm start serves without a Telegram token",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerProcess.start({
          AGENT_HOST_ALLOW: "telegram:12345,webchat:*"
        })
        const page = yield* Effect.promise(() => fetch(`${server.url}/`))
        assert.strictEqual(page.status, 200)
        yield* Effect.promise(() => page.text())
        assert.match(
          server.output(),
          /level=WARN[^\n]*authorization is configured for channel \\"telegram\\", which is not enabled/
        )
      }),
    { timeout: 120_000 }
  )
})
