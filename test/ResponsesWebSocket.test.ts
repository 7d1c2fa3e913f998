import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import OpenAI from "openai"
import { ResponsesWS } from "openai/resources/responses/ws"
import * as Responses from "../src/channels/Responses/index.js"
import { AgentHost } from "../src/core/AgentHost.js"
import {
  assertCompactResource,
  assertResponseResource,
  assertStreamEvent,
  assertWebSocketCreate,
  assertWebSocketError
} from "./utils/OpenResponsesSchema.js"
import * as ResponsesAgent from "./utils/ResponsesAgent.js"
import * as TestHost from "./utils/TestHost.js"
import type { Frame, Turn } from "./utils/WsClient.js"
import { connect } from "./utils/WsClient.js"

const KEY = "sk-ws-test"
const auth = { authorization: `Bearer ${KEY}` }

const create = (body: Record<string, unknown>) => {
  const event = { type: "response.create", model: "agent", ...body }
  assertWebSocketCreate(event)
  return event
}

/** A turn that ended with a completed response: every frame is a spec streaming event. */
const completed = (turn: Turn) => {
  for (const frame of turn.frames) assertStreamEvent(frame)
  assert.strictEqual(turn.last.type, "response.completed")
  assertResponseResource(turn.response)
  assert.strictEqual(turn.response!.status, "completed")
  return turn.response!
}

const errorCode = (frame: Frame) => {
  assertWebSocketError(frame)
  return (frame["error"] as { readonly code: string }).code
}

const textOf = (response: Record<string, unknown>) =>
  JSON.stringify((response["output"] as ReadonlyArray<unknown>).filter((i) => (i as Frame).type === "message"))

const postJson = (url: string, path: string, body: unknown, headers: Record<string, string> = auth) =>
  Effect.promise(async () => {
    const res = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body)
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  })

const hostLayer = TestHost.layer({
  channels: [Responses.make({ maxCachedResponses: 2 })],
  target: ResponsesAgent.layer,
  settings: { apiKeys: [KEY], maxBodyBytes: 64 * 1024 }
})

describe("Responses WebSocket mode", () => {
  layer(hostLayer)((it) => {
    it.scoped("a response.create streams every event as one JSON text frame, then another on the same socket", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        const first = completed(yield* client.turn(create({ input: "Reply with exactly: first" })))
        assert.strictEqual(first["store"], true)
        const types = (yield* client.turn(create({ store: false, input: "second" }))).frames.map((f) => f.type)
        assert.deepStrictEqual(types.slice(0, 2), ["response.created", "response.in_progress"])
        assert.strictEqual(types[types.length - 1], "response.completed")
        // Stored responses are there over HTTP as usual.
        const stored = yield* Effect.promise(() => fetch(`${host.url}/v1/responses/${first.id}`, { headers: auth }))
        assert.strictEqual(stored.status, 200)
      }))

    it.scoped("store:false continues on its own socket only; a miss is previous_response_not_found", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        const first = completed(yield* client.turn(create({ store: false, input: "the code word is cobalt" })))
        const second = completed(
          yield* client.turn(create({ store: false, previous_response_id: first.id, input: "what was it?" }))
        )
        // The default agent numbers the turns of its session: the continuation is turn 2 of the same session.
        assert.include(textOf(second), "turn 2")
        const other = yield* connect(host.url, auth)
        const miss = yield* other.turn(create({ store: false, previous_response_id: first.id, input: "again" }))
        assert.strictEqual(errorCode(miss.last), "previous_response_not_found")
        assert.strictEqual(miss.last["status"], 404)
        // The socket stays usable: a new chain starts fine.
        completed(yield* other.turn(create({ store: false, input: "start over" })))
        const unknown = yield* client.turn(create({ previous_response_id: "resp_nope", input: "x" }))
        assert.strictEqual(errorCode(unknown.last), "previous_response_not_found")
      }))

    it.scoped("a failed continuation evicts its cache entry", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        const first = completed(yield* client.turn(create({ store: false, input: "remember ember" })))
        const failed = yield* client.turn(create({
          store: false,
          previous_response_id: first.id,
          input: [{ type: "function_call_output", call_id: "call_missing", output: "no such call" }]
        }))
        assert.strictEqual(errorCode(failed.last), "invalid_request")
        assert.include((failed.last["error"] as { message: string }).message, "call_missing")
        const retry = yield* client.turn(create({ store: false, previous_response_id: first.id, input: "stale" }))
        assert.strictEqual(errorCode(retry.last), "previous_response_not_found")
      }))

    it.scoped("a failed response evicts the entry it continued, too", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        const first = completed(yield* client.turn(create({ store: false, input: "hello" })))
        const failed = yield* client.turn(create({ store: false, previous_response_id: first.id, input: "explode" }))
        assert.strictEqual(failed.last.type, "response.failed")
        const retry = yield* client.turn(create({ store: false, previous_response_id: first.id, input: "again" }))
        assert.strictEqual(errorCode(retry.last), "previous_response_not_found")
      }))

    it.scoped("the cache is bounded: the oldest response is forgotten", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        const ids: Array<string> = []
        for (const n of [1, 2, 3]) ids.push(completed(yield* client.turn(create({ store: false, input: `r${n}` }))).id)
        const oldest = yield* client.turn(create({ store: false, previous_response_id: ids[0], input: "x" }))
        assert.strictEqual(errorCode(oldest.last), "previous_response_not_found")
        completed(yield* client.turn(create({ store: false, previous_response_id: ids[2], input: "x" })))
      }))

    it.scoped("one response at a time: a create while one runs is an error event and changes nothing", () =>
      Effect.gen(function*() {
        ResponsesAgent.resetGate()
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        client.socket.send(JSON.stringify(create({ input: "wait for it" })))
        const busy = yield* client.turn(create({ input: "me too" }))
        // The first turn's opening events may come first; the error event ends this collection.
        assert.strictEqual(errorCode(busy.last), "response_already_in_flight")
        ResponsesAgent.openGate()
        const rest = yield* client.turn(create({ input: "after" }))
        // The first response's frames end with its terminal event before the next create is read.
        const firstDone = busy.frames.concat(rest.frames).findIndex((f) => f.type === "response.completed")
        assert.isAbove(firstDone, -1)
      }))

    it.scoped("bad frames are error events; the socket stays open", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        assert.strictEqual(errorCode(yield* client.raw("{not json")), "invalid_json")
        assert.strictEqual(errorCode(yield* client.raw(JSON.stringify({ type: "session.update" }))), "invalid_request")
        assert.strictEqual(errorCode(yield* client.raw("[1]")), "invalid_request")
        assert.strictEqual(errorCode(yield* client.raw(Buffer.from("{}"), true)), "invalid_request")
        const missing = yield* client.raw(JSON.stringify({ type: "response.create", model: "m" }))
        assert.strictEqual(errorCode(missing), "missing_required_parameter")
        const background = yield* client.raw(JSON.stringify({ type: "response.create", input: "x", background: true }))
        assert.strictEqual(errorCode(background), "invalid_request")
        completed(yield* client.turn(create({ input: "still here" })))
      }))

    it.scoped("a frame past the body limit closes the socket with 1009", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(host.url, auth)
        client.socket.send("x".repeat(65 * 1024))
        assert.strictEqual(yield* client.closed, 1009)
      }))

    it.effect("the upgrade gets the host's checks: API key, Host header, path", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const attempt = (headers: Record<string, string>, path = "") =>
          Effect.either(Effect.scoped(connect(`${host.url}${path}`, headers)))
        const noKey = yield* attempt({})
        assert.isTrue(Either.isLeft(noKey) && noKey.left.message.startsWith("401"))
        const foreign = yield* attempt({ ...auth, host: "evil.example" })
        assert.isTrue(Either.isLeft(foreign) && foreign.left.message.startsWith("421"))
        const elsewhere = yield* attempt(auth, "/nowhere")
        assert.isTrue(Either.isLeft(elsewhere) && elsewhere.left.message.startsWith("404"))
        // A plain GET is still not a route.
        const plain = yield* Effect.promise(() => fetch(`${host.url}/v1/responses`, { headers: auth }))
        assert.strictEqual(plain.status, 405)
      }))

    it.effect("the official openai client's ResponsesWS speaks to it", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = new OpenAI({ baseURL: `${host.url}/v1`, apiKey: KEY, maxRetries: 0 })
        const events = yield* Effect.async<ReadonlyArray<{ type: string }>, Error>((resume) => {
          const ws = new ResponsesWS(client)
          const seen: Array<{ type: string }> = []
          ws.on("event", (event) => {
            seen.push(event)
            if (event.type === "response.completed") {
              ws.close()
              resume(Effect.succeed(seen))
            }
          })
          ws.on("error", (error) => resume(Effect.fail(error)))
          ws.socket.once(
            "open",
            () => ws.send({ type: "response.create", model: "agent", input: "hi from the client" })
          )
        })
        for (const event of events) assertStreamEvent(event)
        const done = events[events.length - 1] as unknown as { response: Record<string, unknown> }
        assert.include(textOf(done.response), "hi from the client")
      }))

    it.effect("compact seals history into a compaction item that a new chain can use", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const compacted = yield* postJson(host.url, "/v1/responses/compact", {
          model: "agent",
          input: [
            { type: "message", role: "user", content: [{ type: "input_text", text: "the code word is slate" }] },
            { type: "message", role: "assistant", content: [{ type: "output_text", text: "OK." }] }
          ]
        })
        assert.strictEqual(compacted.status, 200)
        assertCompactResource(compacted.body)
        assert.strictEqual(compacted.body["object"], "response.compaction")
        const output = compacted.body["output"] as ReadonlyArray<{ type: string; encrypted_content: string }>
        assert.strictEqual(output[0]!.type, "compaction")
        assert.notInclude(output[0]!.encrypted_content, "slate")
        // Fed back as input, the sealed history is the turn's context (the default agent echoes it back).
        const next = yield* postJson(host.url, "/v1/responses", {
          model: "agent",
          input: [...output, { type: "message", role: "user", content: "continue" }]
        })
        assert.strictEqual(next.status, 200)
        assertResponseResource(next.body)
        const items = yield* Effect.promise(() =>
          fetch(`${host.url}/v1/responses/${String(next.body["id"])}/input_items?order=asc`, { headers: auth }).then((
            r
          ) => r.json() as Promise<{ data: ReadonlyArray<{ type: string }> }>)
        )
        assert.deepStrictEqual(items.data.map((i) => i.type), ["compaction", "message"])
        // And over a WebSocket, as a new chain.
        const client = yield* Effect.scoped(Effect.flatMap(connect(host.url, auth), (c) =>
          c.turn({
            type: "response.create",
            model: "agent",
            store: false,
            input: [...output, { role: "user", content: "go" }]
          })))
        completed(client)
      }))

    it.effect("a forged, altered or foreign compaction item is a 400; compact needs a model", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const compacted = yield* postJson(host.url, "/v1/responses/compact", { model: "agent", input: "secret plan" })
        const content = (compacted.body["output"] as ReadonlyArray<{ encrypted_content: string }>)[0]!.encrypted_content
        const flipped = content.slice(0, -3) + (content.endsWith("A") ? "B" : "A") + content.slice(-2)
        for (const bad of [flipped, "ahc1.AAAA", "gAAAAABpM0Yj-forged=", ""]) {
          const res = yield* postJson(host.url, "/v1/responses", {
            input: [{ type: "compaction", encrypted_content: bad }, { role: "user", content: "x" }]
          })
          assert.strictEqual(res.status, 400, bad)
          assert.strictEqual((res.body["error"] as { param: string }).param, "input[0].encrypted_content")
        }
        const noModel = yield* postJson(host.url, "/v1/responses/compact", { input: "x" })
        assert.strictEqual(noModel.status, 400)
        assert.strictEqual((noModel.body["error"] as { param: string }).param, "model")
        const nothing = yield* postJson(host.url, "/v1/responses/compact", { model: "agent" })
        assert.strictEqual(nothing.status, 400)
        const missing = yield* postJson(host.url, "/v1/responses/compact", {
          model: "agent",
          previous_response_id: "resp_missing"
        })
        assert.strictEqual(missing.status, 404)
      }))
  })

  it.effect("compaction items belong to the user isolation key they were sealed for", () =>
    Effect.gen(function*() {
      const host = yield* AgentHost
      const as = (user: string) => ({ ...auth, "x-agent-user-isolation-key": user })
      const compacted = yield* postJson(
        host.url,
        "/v1/responses/compact",
        { model: "agent", input: "alice's" },
        as("alice")
      )
      const output = compacted.body["output"] as ReadonlyArray<unknown>
      const bob = yield* postJson(
        host.url,
        "/v1/responses",
        { input: [...output, { role: "user", content: "x" }] },
        as("bob")
      )
      assert.strictEqual(bob.status, 400)
      const alice = yield* postJson(
        host.url,
        "/v1/responses",
        { input: [...output, { role: "user", content: "x" }] },
        as("alice")
      )
      assert.strictEqual(alice.status, 200)
    }).pipe(Effect.provide(TestHost.layer({
      channels: [Responses.make()],
      settings: { apiKeys: [KEY], trustIsolationHeaders: true }
    }))))

  it.effect("shutdown closes an idle socket with 1001", () =>
    Effect.gen(function*() {
      const hostScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(TestHost.layer({ channels: [Responses.make()] }), hostScope)
      const host = Context.get(context, AgentHost)
      const client = yield* connect(host.url)
      completed(yield* client.turn(create({ input: "before shutdown" })))
      const closing = yield* Effect.fork(Scope.close(hostScope, Exit.void))
      assert.strictEqual(yield* client.closed, 1001)
      yield* Fiber.join(closing)
    }).pipe(Effect.scoped))
})
