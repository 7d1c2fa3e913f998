/**
 * Example 3: testing your agent with the host's test layers — the real HTTP host on 127.0.0.1, an in-memory
 * state store, your agent as the target. Also runs examples 1 and 2 so they stay working.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as ServerProcess from "../test/utils/ServerProcess.js"
import * as TestHost from "../test/utils/TestHost.js"
import { plainText } from "./custom-channel.js"
import { AppLive, shoutingAgent } from "./my-agent-app.js"

const ask = (url: string, body: string, contentType = "application/json") =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body, headers: { "content-type": contentType } }).then((r) => r.text())
  )

describe("examples", () => {
  layer(TestHost.layer({ channels: [Invocations.make(), plainText], target: Agent.layer(shoutingAgent) }))((it) => {
    it.effect("my agent answers through the Invocations channel and remembers the session", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const first = JSON.parse(
          yield* ask(`${host.url}/invocations`, JSON.stringify({ message: "hi", session_id: "t" }))
        )
        assert.strictEqual(first.response, "HI (turn 1)")
        const second = JSON.parse(
          yield* ask(`${host.url}/invocations`, JSON.stringify({ message: "yo", session_id: "t" }))
        )
        assert.strictEqual(second.response, "YO (turn 2)")
      }))

    it.effect("the custom channel serves plain text per user", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        assert.strictEqual(yield* ask(`${host.url}/plain/ann`, "hello", "text/plain"), "HELLO (turn 1)")
        assert.strictEqual(yield* ask(`${host.url}/plain/bob`, "hey", "text/plain"), "HEY (turn 1)")
        assert.strictEqual(yield* ask(`${host.url}/plain/ann`, "again", "text/plain"), "AGAIN (turn 2)")
      }))
  })

  it.scoped("the example app composes and serves (port 0)", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(AppLive.pipe(Layer.provide(HostConfig.layer({ port: 0 }))))
      const host = ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      const reply = JSON.parse(yield* ask(`${host.url}/invocations`, JSON.stringify({ message: "composed" })))
      assert.strictEqual(reply.response, "COMPOSED (turn 1)")
    }))

  it.scopedLive(
    "the custom channel example runs as a program (npx tsx examples/custom-channel.ts)",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerProcess.start({}, undefined, "examples/custom-channel.ts")
        const reply = yield* ask(`${server.url}/plain/ann`, "hello", "text/plain")
        assert.include(reply, "You said: \"hello\"")
        assert.include(reply, "over the plain channel")
      }),
    { timeout: 120_000 }
  )
})
