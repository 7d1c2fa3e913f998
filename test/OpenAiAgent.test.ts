import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Redacted, Stream } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as OpenAiAgent from "../src/core/OpenAiAgent.js"
import { noIsolationKeys } from "../src/core/RequestContext.js"
import type { Turn } from "../src/core/Target.js"
import { userMessage } from "../src/domain/Message.js"
import * as FakeOpenAi from "./fake/FakeOpenAi.js"
import * as TestHost from "./utils/TestHost.js"

const agentAt = (url: string) =>
  OpenAiAgent.make().pipe(
    Effect.provide(
      OpenAiLanguageModel.layer({ model: "gpt-test" }).pipe(
        Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make("sk-test"), apiUrl: url })),
        Layer.provide(FetchHttpClient.layer)
      )
    )
  )

const turn = (text: string, extra: Partial<Turn> = {}): Turn => ({
  input: [userMessage(text)],
  history: [],
  sessionId: "s",
  options: {},
  context: {
    channel: "test",
    operation: "message.create",
    sessionKey: "s",
    isolation: noIsolationKeys,
    responseId: undefined,
    previousResponseId: undefined,
    identity: undefined
  },
  ...extra
})

describe("OpenAiAgent against a scripted OpenAI-compatible upstream", () => {
  it.scoped("answers text, sends history, uses the API key", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make((body) => ({
        kind: "text",
        text: `echo ${JSON.stringify(body.input).length}`
      }))
      const agent = yield* agentAt(fake.url)
      const response = yield* agent.run(
        turn("hello", {
          history: [userMessage("earlier"), { role: "assistant", contents: [{ _tag: "text", text: "ok" }] }]
        })
      )
      const text = response.messages.flatMap((m) => m.contents).filter((c) => c._tag === "text").map((c) =>
        (c as any).text
      ).join("")
      assert.match(text, /^echo \d+$/)
      assert.strictEqual(response.usage?.totalTokens, 18)
      const sent = fake.requests[0]!
      assert.strictEqual(sent.headers.authorization, "Bearer sk-test")
      assert.strictEqual(sent.body.model, "gpt-test")
      const serialized = JSON.stringify(sent.body.input)
      assert.include(serialized, "earlier")
      assert.include(serialized, "hello")
    }))

  it.scoped("streams deltas that concatenate to the reply", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make(() => ({ kind: "text", text: "one two three" }))
      const agent = yield* agentAt(fake.url)
      const updates = Chunk.toReadonlyArray(yield* Stream.runCollect(agent.stream(turn("go"))))
      const text = updates.flatMap((u) => u.contents).filter((c) => c._tag === "text").map((c) => (c as any).text).join(
        ""
      )
      assert.strictEqual(text, "one two three")
      assert.isTrue(updates.some((u) => u.contents.some((c) => c._tag === "usage")))
    }))

  it.scoped("offers client tools and returns the model's function call; the result goes back next turn", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make((body, n) =>
        n === 1 ?
          { kind: "call", name: "get_weather", arguments: "{\"city\":\"Oslo\"}", callId: "call_1" } :
          { kind: "text", text: "It is sunny" }
      )
      const agent = yield* agentAt(fake.url)
      const tools = [{
        name: "get_weather",
        description: "Weather by city",
        parameters: { type: "object", properties: { city: { type: "string" } } }
      }]
      const first = yield* agent.run(turn("weather?", { options: { tools } }))
      const call = first.messages[0]!.contents.find((c) => c._tag === "function_call")
      assert.deepStrictEqual(call, {
        _tag: "function_call",
        callId: "call_1",
        name: "get_weather",
        arguments: "{\"city\":\"Oslo\"}"
      })
      assert.strictEqual(first.finishReason, "tool_calls")
      assert.strictEqual(fake.requests[0]!.body.tools[0].name, "get_weather")
      assert.deepStrictEqual(fake.requests[0]!.body.tools[0].parameters, {
        type: "object",
        properties: { city: { type: "string" } }
      })
      const second = yield* agent.run(turn("", {
        history: [userMessage("weather?"), first.messages[0]!],
        input: [{ role: "tool", contents: [{ _tag: "function_result", callId: "call_1", result: "sunny" }] }],
        options: { tools }
      }))
      assert.include(JSON.stringify(second.messages), "It is sunny")
      const input = JSON.stringify(fake.requests[1]!.body.input)
      assert.include(input, "function_call_output")
      assert.include(input, "call_1")
    }))

  it.scoped("an upstream failure becomes an AgentError, and the host answers 500 with a clear message", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make(() => ({ kind: "error", status: 400, message: "bad things" }))
      const agent = yield* agentAt(fake.url)
      const error = yield* Effect.flip(agent.run(turn("x")))
      assert.strictEqual(error._tag, "AgentError")
      const host = yield* Layer.build(TestHost.layer({ channels: [Invocations.make()], target: Agent.layer(agent) }))
        .pipe(
          Effect.map((ctx) => ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"])
        )
      const res = yield* Effect.promise(() =>
        fetch(`${host.url}/invocations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message: "hi" })
        })
      )
      assert.strictEqual(res.status, 500)
      const body = yield* Effect.promise(() => res.json())
      assert.strictEqual(body.error.type, "agent_error")
    }))

  it.scoped("runs end to end through the host with per-session history", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make((_body, n) => ({ kind: "text", text: `reply ${n}` }))
      const agent = yield* agentAt(fake.url)
      const ctx = yield* Layer.build(TestHost.layer({ channels: [Invocations.make()], target: Agent.layer(agent) }))
      const host = ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      const ask = (message: string) =>
        Effect.promise(() =>
          fetch(`${host.url}/invocations`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message, session_id: "h" })
          }).then(
            (r) => r.json()
          )
        )
      assert.strictEqual((yield* ask("first")).response, "reply 1")
      assert.strictEqual((yield* ask("second")).response, "reply 2")
      const input = JSON.stringify(fake.requests[1]!.body.input)
      assert.include(input, "first")
      assert.include(input, "reply 1")
      assert.include(input, "second")
    }))
})
