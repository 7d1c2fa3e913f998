import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ServerProcess from "./utils/ServerProcess.js"

describe("npm start (the real server as a process)", () => {
  it.scopedLive("answers the README's curl, logs a banner and one line per request, and exits on SIGTERM", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "agent-host-e2e-"))
      // The per-turn "channel request" line is at debug (at info, turns are counted by agent_host_turns_total).
      const server = yield* ServerProcess.start({ AGENT_HOST_STATE_DIR: dir, LOG_LEVEL: "debug" })
      const res = yield* Effect.promise(() =>
        fetch(`${server.url}/invocations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message: "hi" })
        })
      )
      assert.strictEqual(res.status, 200)
      const body = yield* Effect.promise(() => res.json())
      assert.include(body.response, "hi")
      assert.isString(body.session_id)
      // The request's log line is written as its handler ends, after the response: it reaches the pipe a moment later.
      const requestLine = /channel request.*channel=invocations.*operation=invoke/s
      yield* Effect.sync(() => requestLine.test(server.output())).pipe(
        Effect.repeat({ until: (seen) => seen, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("5 seconds"),
        Effect.ignore
      )
      const output = server.output()
      assert.include(output, "agent host ready")
      assert.match(output, requestLine)
      const code = yield* server.kill("SIGTERM")
      assert.strictEqual(code, 0)
    }))
})
