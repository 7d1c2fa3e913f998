import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
import OpenAI from "openai"
import { Authorizer } from "../src/auth/Authorizer.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as AgentHostModule from "../src/core/AgentHost.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Channels from "../src/core/Channels.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as Sessions from "../src/core/Sessions.js"
import * as Turns from "../src/core/Turns.js"
import * as Delivery from "../src/delivery/Delivery.js"
import { AccessDenied } from "../src/domain/Errors.js"
import * as StateStore from "../src/state/StateStore.js"
import { assertResponseResource, assertStreamEvent } from "./utils/OpenResponsesSchema.js"
import * as ResponsesAgent from "./utils/ResponsesAgent.js"

const KEY = "sk-test-key"

// Refuses the identity "blocked"; everyone else may run.
const authorizer = Layer.succeed(Authorizer, {
  authorize: (request) =>
    request.identity?.nativeId === "blocked" ?
      Effect.fail(new AccessDenied({ reasonCode: "not_allowed", message: "this user may not use the agent" })) :
      Effect.succeed(request),
  validate: () => Effect.void
})

const core = Turns.layer.pipe(
  Layer.provideMerge(Delivery.layer),
  Layer.provideMerge(Delivery.layerPushInProcess),
  Layer.provideMerge(Sessions.layerConfig),
  Layer.provideMerge(Channels.layer),
  Layer.provideMerge(authorizer)
)

const hostLayer = AgentHostModule.layer({ channels: [Responses.make({ busyPolicy: "reject" })] }).pipe(
  Layer.provideMerge(core),
  Layer.provide(ResponsesAgent.layer),
  Layer.provide(StateStore.layerMemory),
  Layer.provide(
    HostConfig.layer({ port: 0, host: "127.0.0.1", apiKeys: [KEY], maxBodyBytes: 64 * 1024 })
  )
)

interface Reply {
  readonly status: number
  readonly json: { readonly error: { message: string; type: string; param: string | null; code: string } }
  readonly text: string
}

const call = (url: string, init: { method?: string; body?: string; key?: string | null } = {}) =>
  Effect.promise(async (): Promise<Reply> => {
    const headers: Record<string, string> = { "content-type": "application/json" }
    if (init.key !== null) headers["authorization"] = `Bearer ${init.key ?? KEY}`
    const res = await fetch(url, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers,
      ...(init.body === undefined ? {} : { body: init.body })
    })
    const text = await res.text()
    let json: Reply["json"]
    try {
      json = JSON.parse(text)
    } catch {
      json = { error: { message: "", type: "", param: null, code: "" } }
    }
    return { status: res.status, json, text }
  })

/** Asserts the OpenAI envelope with all four fields, and the expected status/code/param. */
const expectError = (reply: Reply, status: number, code: string, param?: string | null) => {
  assert.strictEqual(reply.status, status, reply.text)
  const error = reply.json.error
  assert.deepStrictEqual(Object.keys(error).sort(), ["code", "message", "param", "type"])
  assert.strictEqual(error.code, code)
  assert.isString(error.message)
  assert.isAbove(error.message.length, 0)
  assert.isString(error.type)
  if (param !== undefined) assert.strictEqual(error.param, param)
}

describe("Responses errors", () => {
  layer(hostLayer)((it) => {
    it.effect("bad requests get 4xx envelopes and the server keeps serving", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/v1/responses`
        const post = (body: unknown) => call(url, { body: typeof body === "string" ? body : JSON.stringify(body) })

        expectError(yield* post("{not json"), 400, "invalid_json", null)
        expectError(yield* post("[1,2]"), 400, "invalid_request", null)
        expectError(yield* post({}), 400, "missing_required_parameter", "input")
        expectError(yield* post({ input: 3 }), 400, "invalid_request", "input")
        expectError(yield* post({ input: "" }), 400, "invalid_request", "input")
        expectError(yield* post({ input: [] }), 400, "invalid_request", "input")
        expectError(yield* post({ input: "x", temperature: "hot" }), 400, "invalid_request", "temperature")
        expectError(yield* post({ input: "x", temperature: 7 }), 400, "invalid_request", "temperature")
        expectError(yield* post({ input: "x", max_output_tokens: 3 }), 400, "invalid_request", "max_output_tokens")
        expectError(yield* post({ input: "x", metadata: { a: 1 } }), 400, "invalid_request", "metadata.a")
        expectError(
          yield* post({ input: "x", tools: [{ type: "web_search" }] }),
          400,
          "invalid_request",
          "tools[0].type"
        )
        expectError(yield* post({ input: [{ type: "bogus" }] }), 400, "invalid_request", "input[0].type")
        expectError(yield* post({ input: ["text"] }), 400, "invalid_request", "input[0]")
        expectError(
          yield* post({ input: [{ role: "user", content: [{ type: "input_image" }] }] }),
          400,
          "invalid_request",
          "input[0].content[0].image_url"
        )
        expectError(
          yield* post({ input: [{ role: "wizard", content: "hi" }] }),
          400,
          "invalid_request",
          "input[0].role"
        )
        expectError(
          yield* post({ input: [{ type: "function_call_output", output: "x" }] }),
          400,
          "invalid_request",
          "input[0].call_id"
        )
        expectError(yield* post({ input: "x", response_target: 5 }), 400, "invalid_request", "response_target")
        expectError(yield* post({ input: "x", response_target: [""] }), 400, "invalid_request", "response_target[0]")
        expectError(yield* post({ input: "x", background: true, store: false }), 400, "invalid_request", "store")
        expectError(
          yield* post({ input: "x", previous_response_id: "resp_nope", conversation: "c" }),
          400,
          "invalid_request",
          "conversation"
        )
        expectError(
          yield* post({ input: "x", previous_response_id: "resp_missing" }),
          404,
          "previous_response_not_found",
          "previous_response_id"
        )
        expectError(yield* post({ input: "x".repeat(100 * 1024) }), 413, "request_too_large")

        expectError(yield* call(`${url}/resp_missing`), 404, "response_not_found")
        expectError(yield* call(`${url}/resp_missing`, { method: "DELETE" }), 404, "response_not_found")
        expectError(yield* call(`${url}/resp_missing/input_items`), 404, "response_not_found")
        expectError(yield* call(`${url}/resp_missing/cancel`, { method: "POST" }), 404, "response_not_found")

        const ok = yield* post({ input: "still serving" })
        assert.strictEqual(ok.status, 200)
        const created = JSON.parse(ok.text) as { id: string }
        assertResponseResource(created)
        expectError(yield* call(`${url}/${created.id}?stream=true`), 400, "invalid_request", "stream")
        expectError(yield* call(`${url}/${created.id}/input_items?limit=0`), 400, "invalid_request", "limit")
        expectError(yield* call(`${url}/${created.id}/input_items?order=up`), 400, "invalid_request", "order")
        expectError(yield* call(`${url}/${created.id}/input_items?after=nope`), 400, "invalid_request", "after")
        expectError(yield* call(`${url}/${created.id}/cancel`, { method: "POST" }), 400, "invalid_request")
        const again = yield* post({ input: "and again" })
        assert.strictEqual(again.status, 200)
      }))

    it.effect("API keys: 401 without a valid bearer key", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/v1/responses`
        expectError(yield* call(url, { body: JSON.stringify({ input: "x" }), key: null }), 401, "invalid_api_key")
        expectError(yield* call(url, { body: JSON.stringify({ input: "x" }), key: "wrong" }), 401, "invalid_api_key")
        expectError(yield* call(`${url}/resp_x`, { key: null }), 401, "invalid_api_key")
        const client = new OpenAI({ baseURL: `${host.url}/v1`, apiKey: "wrong", maxRetries: 0 })
        const error = yield* Effect.promise(() => client.responses.create({ input: "x" }).then(() => null, (e) => e))
        assert.instanceOf(error, OpenAI.AuthenticationError)
        const good = new OpenAI({ baseURL: `${host.url}/v1`, apiKey: KEY, maxRetries: 0 })
        const response = yield* Effect.promise(() => good.responses.create({ input: "with key" }))
        assert.strictEqual(response.status, "completed")
      }))

    it.effect("AccessDenied is 403, a busy session 409", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/v1/responses`
        const denied = yield* call(url, { body: JSON.stringify({ input: "x", safety_identifier: "blocked" }) })
        expectError(denied, 403, "not_allowed")
        assert.strictEqual(denied.json.error.type, "permission_error")
        const streamDenied = yield* call(url, { body: JSON.stringify({ input: "x", user: "blocked", stream: true }) })
        expectError(streamDenied, 403, "not_allowed")

        ResponsesAgent.resetGate()
        const busy = { input: "wait here", background: true }
        const first = yield* call(url, { body: JSON.stringify(busy) })
        assert.strictEqual(first.status, 200)
        const id = (JSON.parse(first.text) as { id: string }).id
        // a continuation of the running response is a turn in its session
        const second = yield* call(url, { body: JSON.stringify({ input: "me too", previous_response_id: id }) })
        expectError(second, 409, "session_busy")
        assert.strictEqual(second.json.error.type, "conflict_error")
        ResponsesAgent.openGate()
        for (let i = 0; i < 200; i++) {
          const polled = yield* call(`${url}/${id}`)
          if ((polled.json as unknown as { status: string }).status === "completed") break
          yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
        }
        const third = yield* call(url, { body: JSON.stringify({ input: "my turn", previous_response_id: id }) })
        assert.strictEqual(third.status, 200)
      }))

    it.effect("a reply delivered elsewhere renders as an empty completed response", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/v1/responses`
        const reply = yield* call(url, { body: JSON.stringify({ input: "quiet", response_target: "none" }) })
        assert.strictEqual(reply.status, 200)
        const response = JSON.parse(reply.text) as { status: string; output: Array<unknown>; metadata: object }
        assertResponseResource(response)
        assert.strictEqual(response.status, "completed")
        assert.deepStrictEqual(response.output, [])
        assert.deepStrictEqual(response.metadata, { [Responses.OUT_OF_BAND_KEY]: "out_of_band" })

        const streamed = yield* call(url, {
          body: JSON.stringify({ input: "quiet", response_target: { kind: "none" }, stream: true })
        })
        const events = streamed.text.split("\n\n").filter((f) => f.startsWith("event:")).map((f) =>
          JSON.parse(f.split("\n")[1]!.slice(6)) as { type: string; response?: { output: Array<unknown> } }
        )
        for (const event of events) assertStreamEvent(event)
        assert.deepStrictEqual(events.map((e) => e.type), [
          "response.created",
          "response.in_progress",
          "response.completed"
        ])
        assert.deepStrictEqual(events[2]!.response!.output, [])
      }))
  })

  it.effect("a live run: a follower replays from any sequence, then follows live events until the run ends", () =>
    Effect.gen(function*() {
      const event = (sequence: number) => ({ sequence, type: "t", json: `{"n":${sequence}}` })
      const frame = (n: number) => `event: t\ndata: {"n":${n}}\n\n`
      const run = yield* Responses.LiveRun.make([event(1), event(2)])
      const seen: Array<string> = []
      const fromStart = yield* Responses.LiveRun.follow(run, 0).pipe(
        Stream.runForEach((text) => Effect.sync(() => seen.push(text))),
        Effect.fork
      )
      const fromTwo = yield* Effect.fork(Stream.runCollect(Responses.LiveRun.follow(run, 2)))
      // The events so far arrive as one write.
      while (seen.length === 0) yield* Effect.yieldNow()
      assert.deepStrictEqual(seen, [frame(1) + frame(2)])
      yield* Responses.LiveRun.append(run, [event(3)])
      yield* Responses.LiveRun.append(run, [event(4)])
      yield* Responses.LiveRun.finish(run)
      yield* Fiber.join(fromStart)
      assert.strictEqual(seen.join(""), [1, 2, 3, 4].map(frame).join(""))
      assert.strictEqual([...yield* Fiber.join(fromTwo)].join(""), frame(3) + frame(4))
      // A follower that comes after the end replays from where it asks, and ends at once.
      assert.deepStrictEqual([...yield* Stream.runCollect(Responses.LiveRun.follow(run, 3))], [frame(4)])
      assert.deepStrictEqual([...yield* Stream.runCollect(Responses.LiveRun.follow(run, 4))], [])
    }))
})
