/**
 * Unmodified clients against the composition `npm start` runs (`Server.layerFromEnv`, memory state, the default
 * agent): the official `openai` Node client on Responses, Chat Completions and models, and `@effect/ai-openai`
 * (generateText, streamText, generateObject, a Toolkit with typed parameters).
 */
import { LanguageModel, Tool, Toolkit } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, layer } from "@effect/vitest"
import { Ajv } from "ajv"
import { Chunk, ConfigProvider, Effect, Layer, Schema, Stream } from "effect"
import OpenAI from "openai"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Server from "../src/Server.js"
import { freePort } from "./utils/ServerProcess.js"

const env = {
  HOST: "127.0.0.1",
  AGENT_HOST_STATE: "memory",
  AGENT_HOST_WEBCHAT: "false",
  AGENT_HOST_INVOCATIONS: "false",
  LOG_LEVEL: "warn"
}

const hostLayer = Layer.unwrapEffect(Effect.map(freePort, (port) =>
  Server.layerFromEnv.pipe(
    Layer.provide(
      Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ ...env, PORT: String(port) }))))
    )
  )))

const ajv = new Ajv({ strict: false })

const weatherTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: {
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
    },
    strict: true
  }
}
const stockTool: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: "function",
  function: {
    name: "lookup_stock",
    description: "Look up a stock price",
    parameters: { type: "object", properties: { ticker: { type: "string" } }, required: ["ticker"] }
  }
}

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const collect = <A>(iterable: AsyncIterable<A>) =>
  promise(async () => {
    const out: Array<A> = []
    for await (const item of iterable) out.push(item)
    return out
  })

describe("OpenAI clients against npm start", () => {
  layer(hostLayer, { timeout: 60_000 })((it) => {
    const client = Effect.map(
      AgentHost,
      (host) => new OpenAI({ baseURL: `${host.url}/v1`, apiKey: "unused", maxRetries: 0 })
    )

    it.effect("models.list and models.retrieve show the hosted target", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const models = yield* collect(openai.models.list())
        assert.deepStrictEqual(models.map((m) => m.id), ["default-agent"])
        assert.strictEqual(models[0]!.object, "model")
        const one = yield* promise(() => openai.models.retrieve("default-agent"))
        assert.strictEqual(one.id, "default-agent")
        const missing = yield* promise(() => openai.models.retrieve("gpt-9").then(() => undefined, (e: unknown) => e))
        assert.instanceOf(missing, OpenAI.NotFoundError)
      }))

    it.effect("chat.completions.create answers with a request id; the conversation is the request's", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const { data, request_id } = yield* promise(() =>
          openai.chat.completions.create({
            model: "default-agent",
            messages: [
              { role: "system", content: "be brief" },
              { role: "user", content: "first" },
              { role: "assistant", content: "ok" },
              { role: "user", content: "hello chat" }
            ]
          }).withResponse()
        )
        assert.match(request_id ?? "", /^req_[0-9a-f]{32}$/)
        assert.strictEqual(data.object, "chat.completion")
        assert.match(data.id, /^chatcmpl-/)
        assert.strictEqual(data.model, "default-agent")
        assert.strictEqual(data.choices.length, 1)
        assert.strictEqual(data.choices[0]!.finish_reason, "stop")
        assert.include(data.choices[0]!.message.content ?? "", "hello chat")
        // The whole history came with the request: it is the conversation's second user turn.
        assert.include(data.choices[0]!.message.content ?? "", "turn 2")
        assert.isAbove(data.usage?.total_tokens ?? 0, 0)
      }))

    it.effect("streams chunks, then usage with include_usage", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const stream = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            messages: [{ role: "user", content: "stream this chat" }],
            stream: true,
            stream_options: { include_usage: true }
          })
        )
        const chunks = yield* collect(stream)
        assert.isTrue(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "m"))
        assert.strictEqual(chunks[0]!.choices[0]!.delta.role, "assistant")
        const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("")
        assert.include(text, "stream this chat")
        const finish = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.finish_reason ?? []))
        assert.deepStrictEqual(finish, ["stop"])
        const last = chunks.at(-1)!
        assert.deepStrictEqual(last.choices, [])
        assert.isAbove(last.usage?.total_tokens ?? 0, 0)
        assert.isTrue(chunks.slice(0, -1).every((c) => c.usage === null))
      }))

    it.effect("tools: auto, required, named, then the tool result; streaming tool calls", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const tools = [weatherTool, stockTool]
        const question: OpenAI.Chat.Completions.ChatCompletionMessageParam = {
          role: "user",
          content: "What's the weather like in Paris?"
        }
        const auto = yield* promise(() => openai.chat.completions.create({ model: "m", messages: [question], tools }))
        assert.strictEqual(auto.choices[0]!.finish_reason, "tool_calls")
        const call = auto.choices[0]!.message.tool_calls![0]!
        assert.strictEqual(call.type, "function")
        if (call.type !== "function") return
        assert.strictEqual(call.function.name, "get_weather")
        const args = JSON.parse(call.function.arguments)
        assert.isTrue(ajv.validate(weatherTool.function.parameters!, args), ajv.errorsText())
        assert.strictEqual(args.location, "Paris")

        const required = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            messages: [{ role: "user", content: "hi" }],
            tools,
            tool_choice: "required"
          })
        )
        assert.strictEqual(required.choices[0]!.finish_reason, "tool_calls")
        const named = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            messages: [question],
            tools,
            tool_choice: { type: "function", function: { name: "lookup_stock" } }
          })
        )
        const namedCall = named.choices[0]!.message.tool_calls![0]!
        assert.strictEqual(namedCall.type === "function" ? namedCall.function.name : "", "lookup_stock")
        const none = yield* promise(() =>
          openai.chat.completions.create({ model: "m", messages: [question], tools, tool_choice: "none" })
        )
        assert.strictEqual(none.choices[0]!.finish_reason, "stop")

        const answered = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            tools,
            messages: [
              question,
              auto.choices[0]!.message,
              { role: "tool", tool_call_id: call.id, content: "sunny, 21C" }
            ]
          })
        )
        assert.strictEqual(answered.choices[0]!.finish_reason, "stop")
        assert.include(answered.choices[0]!.message.content ?? "", "sunny, 21C")

        const stream = yield* promise(() =>
          openai.chat.completions.create({ model: "m", messages: [question], tools, stream: true })
        )
        const chunks = yield* collect(stream)
        const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []))
        assert.strictEqual(deltas[0]!.function?.name, "get_weather")
        assert.match(deltas[0]!.id ?? "", /^call_/)
        assert.deepStrictEqual(chunks.flatMap((c) => c.choices.flatMap((ch) => ch.finish_reason ?? [])), ["tool_calls"])
      }))

    it.effect("response_format json_schema gives JSON valid against the schema", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const schema = {
          type: "object",
          properties: { city: { type: "string" }, score: { type: "integer", minimum: 1, maximum: 5 } },
          required: ["city", "score"],
          additionalProperties: false
        }
        const completion = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            messages: [{ role: "user", content: "rate the weather in Oslo" }],
            response_format: { type: "json_schema", json_schema: { name: "rating", schema, strict: true } }
          })
        )
        const value = JSON.parse(completion.choices[0]!.message.content!)
        assert.isTrue(ajv.validate(schema, value), ajv.errorsText())
      }))

    it.effect("errors are OpenAI-shaped 4xx: n > 1, missing messages, unknown named tool", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const fails = (body: Record<string, unknown>) =>
          promise(() =>
            openai.chat.completions.create(body as never).then(
              () => assert.fail("expected an error"),
              (e: unknown) => e as InstanceType<typeof OpenAI.APIError>
            )
          )
        const n = yield* fails({ model: "m", messages: [{ role: "user", content: "x" }], n: 2 })
        assert.strictEqual(n.status, 400)
        assert.strictEqual(n.param, "n")
        assert.include(n.message, "n = 1")
        assert.match(n.requestID ?? "", /^req_/)
        const missing = yield* fails({ model: "m" })
        assert.strictEqual(missing.status, 400)
        assert.strictEqual(missing.param, "messages")
        const tool = yield* fails({
          model: "m",
          messages: [{ role: "user", content: "x" }],
          tools: [weatherTool],
          tool_choice: { type: "function", function: { name: "nope" } }
        })
        assert.strictEqual(tool.param, "tool_choice.function.name")
        const role = yield* fails({ model: "m", messages: [{ role: "wizard", content: "x" }] })
        assert.strictEqual(role.param, "messages[0].role")
        const usage = yield* fails({ model: "m", messages: [{ role: "user", content: "x" }], stream_options: {} })
        assert.strictEqual(usage.param, "stream_options")
      }))

    it.effect("a kept session (metadata.session_id) stores each message once", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const first = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            metadata: { session_id: "kept-1" },
            store: true,
            messages: [{ role: "user", content: "one" }]
          })
        )
        assert.include(first.choices[0]!.message.content ?? "", "turn 1")
        const second = yield* promise(() =>
          openai.chat.completions.create({
            model: "m",
            metadata: { session_id: "kept-1" },
            messages: [{ role: "user", content: "one" }, first.choices[0]!.message, { role: "user", content: "two" }]
          })
        )
        // Turn 2 of the session: the request's earlier messages were not appended again.
        assert.include(second.choices[0]!.message.content ?? "", "turn 2")
      }))

    it.effect("responses.create with tool_choice required/named and json_schema", () =>
      Effect.gen(function*() {
        const openai = yield* client
        const tools: Array<OpenAI.Responses.FunctionTool> = [weatherTool, stockTool].map((t) => ({
          type: "function",
          name: t.function.name,
          description: t.function.description ?? null,
          parameters: t.function.parameters ?? null,
          strict: t.function.strict ?? false
        }))
        const { data: required, request_id } = yield* promise(() =>
          openai.responses.create({ model: "m", input: "hello", tools, tool_choice: "required" }).withResponse()
        )
        assert.match(request_id ?? "", /^req_/)
        assert.strictEqual(required.output[0]!.type, "function_call")
        const named = yield* promise(() =>
          openai.responses.create({
            model: "m",
            input: "What's the weather like in San Francisco?",
            tools,
            tool_choice: { type: "function", name: "lookup_stock" }
          })
        )
        const call = named.output[0]!
        assert.strictEqual(call.type === "function_call" ? call.name : "", "lookup_stock")
        const weather = yield* promise(() =>
          openai.responses.create({ model: "m", input: "What's the weather like in San Francisco?", tools })
        )
        const weatherCall = weather.output[0]!
        if (weatherCall.type !== "function_call") return assert.fail("expected a function call")
        assert.deepStrictEqual(JSON.parse(weatherCall.arguments), { location: "San Francisco", unit: "celsius" })
        const schema = {
          type: "object",
          properties: { answer: { type: "string" }, items: { type: "array", items: { type: "number" } } },
          required: ["answer", "items"],
          additionalProperties: false
        }
        const structured = yield* promise(() =>
          openai.responses.create({
            model: "m",
            input: "structured please",
            text: { format: { type: "json_schema", name: "out", schema, strict: true } }
          })
        )
        const message = structured.output.find((i) => i.type === "message")
        const text = message?.type === "message" ?
          message.content.map((c) => (c.type === "output_text" ? c.text : "")).join("") :
          ""
        assert.isTrue(ajv.validate(schema, JSON.parse(text)), ajv.errorsText())
        const streamed = yield* collect(
          openai.responses.stream({ model: "m", input: "stream", tools, tool_choice: "required" })
        )
        assert.isTrue(streamed.some((e) => e.type === "response.function_call_arguments.done"))
      }))

    it.effect("@effect/ai-openai: generateText, streamText, generateObject and a typed Toolkit", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const model = OpenAiLanguageModel.layer({ model: "default-agent" }).pipe(
          Layer.provide(OpenAiClient.layer({ apiUrl: `${host.url}/v1` })),
          Layer.provide(FetchHttpClient.layer)
        )
        const generated = yield* LanguageModel.generateText({ prompt: "effect client" }).pipe(Effect.provide(model))
        assert.include(generated.text, "effect client")
        const parts = yield* LanguageModel.streamText({ prompt: "effect stream" }).pipe(
          Stream.runCollect,
          Effect.provide(model)
        )
        const text = Chunk.toReadonlyArray(parts).flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")
        assert.include(text, "effect stream")

        const Forecast = Schema.Struct({
          city: Schema.String,
          days: Schema.Array(Schema.Struct({ day: Schema.Int, high: Schema.Number, sunny: Schema.Boolean })),
          unit: Schema.Literal("celsius", "fahrenheit")
        })
        const object = yield* LanguageModel.generateObject({
          prompt: "the forecast in Lisbon",
          schema: Forecast,
          objectName: "forecast"
        }).pipe(Effect.provide(model))
        assert.strictEqual(object.value.city, "Lisbon")
        assert.isTrue(Schema.is(Forecast)(object.value))

        const GetWeather = Tool.make("get_weather", {
          description: "Get the current weather for a city",
          parameters: { city: Schema.String, unit: Schema.Literal("celsius", "fahrenheit"), days: Schema.Int },
          success: Schema.Struct({ forecast: Schema.String })
        })
        const toolkit = Toolkit.make(GetWeather)
        const seen: Array<{ city: string; unit: string; days: number }> = []
        const handlers = toolkit.toLayer({
          get_weather: (params) =>
            Effect.sync(() => {
              seen.push(params)
              return { forecast: `sunny in ${params.city}` }
            })
        })
        const withTools = yield* LanguageModel.generateText({
          prompt: "What's the weather in Madrid for 3 days?",
          toolkit,
          toolChoice: "required"
        }).pipe(Effect.provide(Layer.merge(model, handlers)))
        assert.deepStrictEqual(seen, [{ city: "Madrid", unit: "celsius", days: 3 }])
        assert.strictEqual(withTools.toolResults[0]?.result.forecast, "sunny in Madrid")
      }))
  })
})
