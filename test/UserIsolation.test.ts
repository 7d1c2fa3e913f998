/**
 * Trusted user isolation headers isolate (issue 13, point 6): with AGENT_HOST_TRUST_ISOLATION_HEADERS, user bob
 * cannot read, continue, list, cancel or delete user alice's stored responses (each answers 404, the same body
 * as an id that does not exist), her `conversation` is missing for him too, and naming her Invocations
 * `session_id` gives him a session of his own. Real HTTP, real SQLite state in a temp dir.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as ResponsesAgent from "./utils/ResponsesAgent.js"
import * as TempDir from "./utils/TempDir.js"
import * as TestHost from "./utils/TestHost.js"

const store = Layer.unwrapScoped(
  Effect.map(TempDir.make(), (directory) => SqliteStateStore.layer({ directory }).pipe(Layer.orDie))
)

const hostLayer = TestHost.layer({
  channels: [Responses.make(), Invocations.make()],
  target: ResponsesAgent.layer,
  store,
  settings: { trustIsolationHeaders: true }
})

const as = (user: string | undefined, method: string, path: string, body?: unknown) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const r = await fetch(`${host.url}${path}`, {
        method,
        headers: {
          "content-type": "application/json",
          ...(user === undefined ? {} : { "x-agent-user-isolation-key": user })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const text = await r.text()
      return { status: r.status, text, body: (text.startsWith("{") ? JSON.parse(text) : {}) as any }
    }))

const outputText = (response: any): string =>
  (response.output ?? []).flatMap((item: any) => (item.content ?? []).map((c: any) => c.text ?? "")).join("")

/** The 404 of an id nobody has, with `id` swapped in: another user's id must answer exactly this. */
const missing = (text: string, id: string, unknown: string) => text.replaceAll(unknown, id)

describe("user isolation headers", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("GET, input_items, previous_response_id and DELETE of another user's response answer 404", () =>
      Effect.gen(function*() {
        const created = yield* as("alice", "POST", "/v1/responses", { input: "alice's secret plan" })
        assert.strictEqual(created.status, 200, created.text)
        const id = created.body.id as string
        const unknown = "resp_00000000000000000000000000000000"
        const nobodys = yield* as("bob", "GET", `/v1/responses/${unknown}`)
        assert.strictEqual(nobodys.status, 404)

        const get = yield* as("bob", "GET", `/v1/responses/${id}`)
        assert.strictEqual(get.status, 404)
        assert.strictEqual(get.text, missing(nobodys.text, id, unknown))
        // No user key is not a skeleton key either.
        assert.strictEqual((yield* as(undefined, "GET", `/v1/responses/${id}`)).status, 404)

        const items = yield* as("bob", "GET", `/v1/responses/${id}/input_items`)
        assert.strictEqual(items.status, 404)
        assert.strictEqual(
          items.text,
          (yield* as("bob", "GET", `/v1/responses/${unknown}/input_items`)).text.replaceAll(unknown, id)
        )

        const chained = yield* as("bob", "POST", "/v1/responses", { input: "go on", previous_response_id: id })
        assert.strictEqual(chained.status, 404)
        const chainedUnknown = yield* as("bob", "POST", "/v1/responses", {
          input: "go on",
          previous_response_id: unknown
        })
        assert.strictEqual(chained.text, chainedUnknown.text.replaceAll(unknown, id))

        const deleted = yield* as("bob", "DELETE", `/v1/responses/${id}`)
        assert.strictEqual(deleted.status, 404)
        assert.strictEqual(
          deleted.text,
          (yield* as("bob", "DELETE", `/v1/responses/${unknown}`)).text.replaceAll(unknown, id)
        )

        // Alice still has all of it.
        const mine = yield* as("alice", "GET", `/v1/responses/${id}`)
        assert.strictEqual(mine.status, 200)
        assert.strictEqual((yield* as("alice", "GET", `/v1/responses/${id}/input_items`)).status, 200)
        const next = yield* as("alice", "POST", "/v1/responses", { input: "and then", previous_response_id: id })
        assert.strictEqual(next.status, 200)
        assert.include(outputText(next.body), "turn 2")
        assert.strictEqual((yield* as("alice", "DELETE", `/v1/responses/${id}`)).status, 200)
      }))

    it.effect("cancel (and the stream replay) of another user's background response answer 404", () =>
      Effect.gen(function*() {
        ResponsesAgent.resetGate()
        const created = yield* as("alice", "POST", "/v1/responses", { input: "wait for it", background: true })
        assert.strictEqual(created.status, 200, created.text)
        const id = created.body.id as string
        const cancel = yield* as("bob", "POST", `/v1/responses/${id}/cancel`)
        assert.strictEqual(cancel.status, 404)
        assert.strictEqual(cancel.body.error.code, "response_not_found")
        const replay = yield* as("bob", "GET", `/v1/responses/${id}?stream=true`)
        assert.strictEqual(replay.status, 404)
        ResponsesAgent.openGate()
        // Bob's cancel did nothing: alice's response completes.
        let status = ""
        for (let i = 0; i < 200 && status !== "completed"; i++) {
          status = (yield* as("alice", "GET", `/v1/responses/${id}`)).body.status
          if (status !== "completed") yield* Effect.sleep("20 millis")
        }
        assert.strictEqual(status, "completed")
      }))

    it.effect("another user's conversation is missing (404), and his turn does not touch it", () =>
      Effect.gen(function*() {
        const created = yield* as("alice", "POST", "/v1/conversations", {})
        const conversation = created.body.id as string
        const a1 = yield* as("alice", "POST", "/v1/responses", { input: "one", conversation })
        const a2 = yield* as("alice", "POST", "/v1/responses", { input: "two", conversation })
        assert.include(outputText(a2.body), "turn 2", a1.text)
        const b1 = yield* as("bob", "POST", "/v1/responses", { input: "hello", conversation })
        assert.strictEqual(b1.status, 404, b1.text)
        const a3 = yield* as("alice", "POST", "/v1/responses", { input: "three", conversation: { id: conversation } })
        assert.include(outputText(a3.body), "turn 3")
      }))

    it.effect("an Invocations session_id is a separate session per user", () =>
      Effect.gen(function*() {
        const a1 = yield* as("alice", "POST", "/invocations", { message: "one", session_id: "sess-shared" })
        assert.strictEqual(a1.status, 200, a1.text)
        const a2 = yield* as("alice", "POST", "/invocations", { message: "two", session_id: "sess-shared" })
        assert.include(a2.body.response, "turn 2")
        const b1 = yield* as("bob", "POST", "/invocations", { message: "what did she say", session_id: "sess-shared" })
        assert.strictEqual(b1.body.session_id, "sess-shared")
        assert.include(b1.body.response, "turn 1")
        const streamed = yield* as("bob", "POST", "/invocations", { message: "again", session_id: "sess-shared" })
        assert.include(streamed.body.response, "turn 2")
        const a3 = yield* as("alice", "POST", "/invocations", { message: "three", session_id: "sess-shared" })
        assert.include(a3.body.response, "turn 3")
      }))
  })
})
