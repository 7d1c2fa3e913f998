import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Channel from "../src/core/Channel.js"
import { json } from "../src/http/HttpBody.js"
import * as LogLine from "../src/internal/LogLine.js"
import * as TestHost from "./utils/TestHost.js"

const logging = Channel.make("logging", () =>
  Effect.succeed({
    path: "/logging",
    routes: [{
      method: "GET" as const,
      path: "/",
      handler: () => Effect.as(Effect.logInfo("handled"), json({ ok: true }))
    }]
  }))

describe("request ids in logs", () => {
  it.scopedLive("every line a request logs carries its x-request-id, the caller's or a generated one", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => void lines.push(LogLine.formatJson(options)))
      const context = yield* Layer.build(TestHost.layer({ channels: [logging] })).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      const host = context.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      const given = yield* Effect.promise(() =>
        fetch(`${host.url}/logging/`, { headers: { "x-request-id": "caller-id-7" } })
      )
      assert.strictEqual(given.headers.get("x-request-id"), "caller-id-7")
      const fresh = yield* Effect.promise(() => fetch(`${host.url}/logging/`))
      const generated = fresh.headers.get("x-request-id")
      assert.match(generated ?? "", /^req_/)
      const handled = lines.map((l) => JSON.parse(l)).filter((e) => e.message === "handled")
      assert.deepStrictEqual(handled.map((e) => e.annotations.request_id), ["caller-id-7", generated])
    }))
})
