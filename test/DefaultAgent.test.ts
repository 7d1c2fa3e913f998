import { assert, describe, it } from "@effect/vitest"
import { Ajv } from "ajv"
import { Chunk, Effect, Stream } from "effect"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import { noIsolationKeys } from "../src/core/RequestContext.js"
import type { Turn } from "../src/core/Target.js"
import type { RunOptions, ToolDefinition } from "../src/domain/ChannelRequest.js"
import type { Message } from "../src/domain/Message.js"
import { responseFromUpdates, responseText } from "../src/domain/Message.js"

const ajv = new Ajv({ strict: false })

const turnOf = (input: ReadonlyArray<Message> | string, options: RunOptions = {}): Turn => ({
  input: typeof input === "string" ? [{ role: "user", contents: [{ _tag: "text", text: input }] }] : input,
  history: [],
  sessionId: "s1",
  options,
  context: {
    channel: "test",
    operation: "message.create",
    sessionKey: "s1",
    isolation: noIsolationKeys,
    responseId: undefined,
    previousResponseId: undefined,
    identity: undefined
  }
})

const weather: ToolDefinition = {
  name: "get_weather",
  description: "Get the current weather for a location",
  parameters: {
    type: "object",
    properties: {
      location: { type: "string", description: "The city and state, e.g. San Francisco, CA" },
      unit: { type: "string", enum: ["celsius", "fahrenheit"] }
    },
    required: ["location", "unit"],
    additionalProperties: false
  }
}
const stocks: ToolDefinition = {
  name: "lookup_stock",
  description: "Look up a stock price by ticker symbol",
  parameters: {
    type: "object",
    properties: { ticker: { type: "string", pattern: "^[A-Z]{1,5}$" }, days: { type: "integer", minimum: 1 } },
    required: ["ticker", "days"]
  }
}
const tools = [weather, stocks]

const run = (turn: Turn) => Effect.runSync(DefaultAgent.agent.run(turn))
const callsOf = (turn: Turn) => {
  const response = run(turn)
  return response.messages.flatMap((m) => m.contents.filter((c) => c._tag === "function_call"))
}

describe("DefaultAgent", () => {
  it("auto calls the tool the prompt asks for, with arguments valid against its schema", () => {
    const calls = callsOf(turnOf("What's the weather like in San Francisco?", { tools }))
    assert.strictEqual(calls.length, 1)
    const call = calls[0]!
    if (call._tag !== "function_call") return
    assert.strictEqual(call.name, "get_weather")
    const args = JSON.parse(call.arguments)
    assert.isTrue(ajv.validate(weather.parameters as object, args), ajv.errorsText())
    assert.strictEqual(args.location, "San Francisco")
    assert.strictEqual(run(turnOf("What's the weather like in Paris?", { tools })).finishReason, "tool_calls")
    // By description words, and the explicit "call <tool>".
    assert.strictEqual(
      (callsOf(turnOf("what's the price of that stock symbol?", { tools }))[0] as { name: string }).name,
      "lookup_stock"
    )
    const explicit = callsOf(turnOf("please call lookup_stock for 3 days", { tools }))[0]
    if (explicit?._tag !== "function_call") return assert.fail("no call")
    const stockArgs = JSON.parse(explicit.arguments)
    assert.isTrue(ajv.validate(stocks.parameters as object, stockArgs), ajv.errorsText())
    assert.strictEqual(stockArgs.days, 3)
  })

  it("auto answers with text when no tool fits; none never calls", () => {
    const plain = run(turnOf("hello there", { tools }))
    assert.strictEqual(plain.finishReason, "stop")
    assert.include(responseText(plain), "hello there")
    const none = run(turnOf("call get_weather in Paris", { tools, toolChoice: "none" }))
    assert.strictEqual(none.finishReason, "stop")
    assert.lengthOf(callsOf(turnOf("call get_weather in Paris", { tools, toolChoice: "none" })), 0)
  })

  it("required always calls (best match, else the first); a named function is called", () => {
    const required = callsOf(turnOf("hello there", { tools, toolChoice: "required" }))
    assert.strictEqual((required[0] as { name: string }).name, "get_weather")
    const best = callsOf(turnOf("a stock ticker please", { tools, toolChoice: "required" }))
    assert.strictEqual((best[0] as { name: string }).name, "lookup_stock")
    for (
      const toolChoice of [{ type: "function", name: "lookup_stock" }, {
        type: "function",
        function: { name: "lookup_stock" }
      }]
    ) {
      const named = callsOf(turnOf("what's the weather in Rome?", { tools, toolChoice }))
      assert.strictEqual((named[0] as { name: string }).name, "lookup_stock")
    }
    const allowed = callsOf(turnOf("weather?", {
      tools,
      toolChoice: { type: "allowed_tools", mode: "required", tools: [{ type: "function", name: "lookup_stock" }] }
    }))
    assert.strictEqual((allowed[0] as { name: string }).name, "lookup_stock")
  })

  it("answers a function result with text using it", () => {
    const input: ReadonlyArray<Message> = [
      { role: "user", contents: [{ _tag: "text", text: "weather in Paris?" }] },
      { role: "assistant", contents: [{ _tag: "function_call", callId: "c1", name: "get_weather", arguments: "{}" }] },
      { role: "tool", contents: [{ _tag: "function_result", callId: "c1", result: "sunny, 21C" }] }
    ]
    const response = run(turnOf(input, { tools, toolChoice: "required" }))
    assert.strictEqual(response.finishReason, "stop")
    assert.include(responseText(response), "sunny, 21C")
    assert.include(responseText(response), "get_weather")
  })

  it("json_schema formats (Responses and Chat Completions shapes) give valid JSON; json_object an object", () => {
    const schema = {
      type: "object",
      properties: {
        city: { type: "string" },
        temperature: { type: "number", minimum: -50, maximum: 60 },
        tags: { type: "array", items: { type: "string" }, minItems: 2 }
      },
      required: ["city", "temperature", "tags"],
      additionalProperties: false
    }
    for (
      const textFormat of [
        { type: "json_schema", name: "w", schema, strict: true },
        { type: "json_schema", json_schema: { name: "w", schema, strict: true } }
      ]
    ) {
      const text = responseText(run(turnOf("the weather in Oslo", { textFormat })))
      const value = JSON.parse(text)
      assert.isTrue(ajv.validate(schema, value), ajv.errorsText())
      assert.strictEqual(value.city, "Oslo")
    }
    const object = JSON.parse(responseText(run(turnOf("hi", { textFormat: { type: "json_object" } }))))
    assert.isObject(object)
  })

  it("streams the same plan", () => {
    const turn = turnOf("What's the weather like in San Francisco?", { tools })
    const updates = Chunk.toReadonlyArray(Effect.runSync(Stream.runCollect(DefaultAgent.agent.stream(turn))))
    const streamed = responseFromUpdates(updates)
    assert.strictEqual(streamed.finishReason, "tool_calls")
    assert.deepStrictEqual(
      streamed.messages.flatMap((m) => m.contents.filter((c) => c._tag === "function_call")),
      callsOf(turn)
    )
  })
})
