import { assert, describe, layer } from "@effect/vitest"
import { Effect, Fiber, FiberRef } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import { currentClientShield } from "../src/http/ClientShield.js"
import * as TestHost from "./utils/TestHost.js"

const post = (url: string, body: string) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } }).then(async (r) => ({
      status: r.status,
      body: await r.text()
    }))
  )

describe("Invocations", () => {
  layer(TestHost.layer({ channels: [Invocations.make()] }))((it) => {
    it.effect("answers a message and continues the session", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const first = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "hello", session_id: "s1" }))
        assert.strictEqual(first.status, 200)
        const a = JSON.parse(first.body)
        assert.include(a.response, "hello")
        assert.include(a.response, "turn 1")
        assert.strictEqual(a.session_id, "s1")
        const second = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "again", session_id: "s1" }))
        assert.include(JSON.parse(second.body).response, "turn 2")
      }))

    it.effect("streams SSE ending with [DONE]", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const res = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "stream me", stream: true }))
        assert.strictEqual(res.status, 200)
        const data = res.body.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6))
        assert.strictEqual(data[data.length - 1], "[DONE]")
        assert.include(data.slice(0, -1).join(""), "stream me")
      }))

    it.effect("rejects bad input with clear errors", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const badJson = yield* post(`${host.url}/invocations`, "{nope")
        assert.strictEqual(badJson.status, 400)
        assert.strictEqual(JSON.parse(badJson.body).error.type, "invalid_json")
        const wrong = yield* post(`${host.url}/invocations`, JSON.stringify({ message: 3 }))
        assert.strictEqual(wrong.status, 422)
        assert.include(JSON.parse(wrong.body).error.message, "string")
        const notObject = yield* post(`${host.url}/invocations`, "[1]")
        assert.strictEqual(notObject.status, 422)
        const big = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "x".repeat(2 * 1024 * 1024) }))
        assert.strictEqual(big.status, 413)
        const ok = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "still up" }))
        assert.strictEqual(ok.status, 200)
      }))
  })
})

describe("Invocations busy policy", () => {
  layer(
    TestHost.layer({
      channels: [Invocations.make({ busyPolicy: "reject" })],
      target: Agent.layer(Agent.make({
        name: "slow",
        run: () =>
          Effect.as(Effect.sleep("300 millis"), {
            messages: [{ role: "assistant", contents: [{ _tag: "text", text: "done" }] }]
          })
      }))
    }),
    { excludeTestServices: true }
  )((it) => {
    it.effect("answers 409 with a clear error while the session is busy", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const first = yield* Effect.fork(
          post(`${host.url}/invocations`, JSON.stringify({ message: "a", session_id: "busy" }))
        )
        yield* Effect.sleep("100 millis")
        const second = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "b", session_id: "busy" }))
        assert.strictEqual(second.status, 409)
        assert.include(JSON.parse(second.body).error.message, "answering another message")
        const done = yield* Fiber.join(first)
        assert.strictEqual(done.status, 200)
      }))
  })
})

describe("Invocations turn fiber", () => {
  // The turn reports the client shield of the fiber it runs in: `shielded` only in the request's own fiber.
  layer(
    TestHost.layer({
      channels: [Invocations.make()],
      target: Agent.layer(Agent.make({
        name: "where",
        run: () =>
          Effect.map(FiberRef.get(currentClientShield), ({ state: shield }) => ({
            messages: [{ role: "assistant", contents: [{ _tag: "text", text: shield }] }]
          }))
      }))
    })
  )((it) => {
    it.effect("a blocking turn on an idle session runs in the request's fiber, shielded from the client", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const keyed = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "a", session_id: "inline" }))
        assert.strictEqual(JSON.parse(keyed.body).response, "shielded")
        const fresh = yield* post(`${host.url}/invocations`, JSON.stringify({ message: "b" }))
        assert.strictEqual(JSON.parse(fresh.body).response, "shielded")
        // Under on_disconnect: cancel the turn needs a fiber of its own (interrupting the wait cancels it).
        const cancel = yield* post(
          `${host.url}/invocations`,
          JSON.stringify({ message: "c", session_id: "inline", on_disconnect: "cancel" })
        )
        assert.strictEqual(JSON.parse(cancel.body).response, "none")
      }))
  })
})

describe("Invocations inline turns and the session actor", () => {
  // A slow agent that says which turn of the session it is answering, or fails as the message asks.
  const slow = Agent.layer(Agent.make({
    name: "slow",
    run: (turn) => {
      const said = turn.input.flatMap((m) => m.contents).map((c) => c._tag === "text" ? c.text : "").join("")
      if (said === "defect") return Effect.die(new Error("boom"))
      return Effect.as(Effect.sleep("200 millis"), {
        messages: [{ role: "assistant", contents: [{ _tag: "text", text: `${said}@${turn.history.length}` }] }]
      })
    }
  }))

  layer(
    TestHost.layer({
      channels: [
        Invocations.make({ name: "queued", path: "/q" }),
        Invocations.make({ name: "stop", path: "/i", busyPolicy: "interrupt" })
      ],
      target: slow
    }),
    { excludeTestServices: true }
  )((it) => {
    it.effect("a turn arriving while the inline one runs queues behind it, in order, and sees its reply", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const first = yield* Effect.fork(post(`${host.url}/q`, JSON.stringify({ message: "a", session_id: "order" })))
        yield* Effect.sleep("50 millis")
        const second = yield* post(`${host.url}/q`, JSON.stringify({ message: "b", session_id: "order" }))
        const done = yield* Fiber.join(first)
        assert.strictEqual(JSON.parse(done.body).response, "a@0")
        // The second turn ran after the first had recorded its input and reply.
        assert.strictEqual(JSON.parse(second.body).response, "b@2")
      }))

    it.effect("the interrupt policy stops the inline turn in its request's fiber; the new turn runs", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const first = yield* Effect.fork(post(`${host.url}/i`, JSON.stringify({ message: "a", session_id: "cut" })))
        yield* Effect.sleep("50 millis")
        const second = yield* post(`${host.url}/i`, JSON.stringify({ message: "b", session_id: "cut" }))
        const stopped = yield* Fiber.join(first)
        assert.strictEqual(stopped.status, 409)
        assert.strictEqual(JSON.parse(stopped.body).error.type, "TurnCancelled")
        assert.include(JSON.parse(stopped.body).error.message, "was cancelled")
        assert.strictEqual(second.status, 200)
        // The stopped turn kept its input in the history; its reply was never recorded.
        assert.strictEqual(JSON.parse(second.body).response, "b@1")
        const third = yield* post(`${host.url}/i`, JSON.stringify({ message: "c", session_id: "cut" }))
        assert.strictEqual(JSON.parse(third.body).response, "c@3")
      }))

    it.effect("an agent defect in an inline turn is the agent's error, and the session goes on", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const failed = yield* post(`${host.url}/q`, JSON.stringify({ message: "defect", session_id: "defect" }))
        assert.strictEqual(failed.status, 500)
        assert.strictEqual(JSON.parse(failed.body).error.type, "agent_error")
        assert.strictEqual(JSON.parse(failed.body).error.message, "the agent failed unexpectedly")
        const next = yield* post(`${host.url}/q`, JSON.stringify({ message: "after", session_id: "defect" }))
        assert.strictEqual(next.status, 200)
        assert.strictEqual(JSON.parse(next.body).response, "after@1")
      }))
  })
})
