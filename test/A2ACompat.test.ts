import type { AgentCard, Message, StreamResponse, Task } from "@a2a-js/sdk"
import { Role, TaskState } from "@a2a-js/sdk"
import { Client } from "@a2a-js/sdk/client"
import { LegacyJsonRpcTransport } from "@a2a-js/sdk/compat/v0_3/client"
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import { A2A } from "../src/channels/A2A/index.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as TestHost from "./utils/TestHost.js"

const message = (text: string, contextId = ""): Message => ({
  messageId: crypto.randomUUID(),
  contextId,
  taskId: "",
  role: Role.ROLE_USER,
  parts: [{ content: { $case: "text", value: text }, metadata: {}, filename: "", mediaType: "text/plain" }],
  metadata: {},
  extensions: [],
  referenceTaskIds: []
})

const send = (text: string, contextId = "") => ({
  tenant: "",
  message: message(text, contextId),
  configuration: undefined,
  metadata: {}
})

const getJson = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(() => fetch(url, { headers }).then((r) => r.json() as Promise<Record<string, any>>))

const rpc = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json", ...headers }
    })
      .then(async (r) => ({ status: r.status, type: r.headers.get("content-type") ?? "", body: await r.text() }))
  )

/** The SDK's 0.3 JSON-RPC transport behind its client: what a 0.3 peer sends on the wire. */
const legacyClient = (baseUrl: string) =>
  Effect.map(
    getJson(`${baseUrl}/.well-known/agent-card.json`, { "a2a-version": "1.0" }),
    (card) => new Client(new LegacyJsonRpcTransport({ endpoint: `${baseUrl}/a2a` }), card as AgentCard)
  )

const replyOf = (task: Task): string => {
  const content = task.status?.message?.parts[0]?.content
  return content?.$case === "text" ? content.value : ""
}

describe("A2A 0.3 compatibility", () => {
  layer(TestHost.layer({ channels: [A2A.make({ agentName: "Echo" })] }))((it) => {
    it.effect("the card carries the 0.3 fields for 0.3 readers only; both read the interfaces", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/.well-known/agent-card.json`
        const old = yield* getJson(url)
        assert.strictEqual(old.url, `${host.url}/a2a`)
        assert.strictEqual(old.preferredTransport, "JSONRPC")
        assert.strictEqual(old.protocolVersion, "0.3")
        assert.strictEqual(old.name, "Echo")
        assert.deepStrictEqual(old.supportedInterfaces.map((i: any) => i.protocolVersion), ["1.0", "0.3"])
        const current = yield* getJson(url, { "a2a-version": "1.0" })
        assert.isUndefined(current.url)
        assert.isUndefined(current.preferredTransport)
        assert.strictEqual(current.supportedInterfaces[0].protocolVersion, "1.0")
      }))

    it.effect("the SDK's 0.3 transport: message/send, message/stream, tasks/get, tasks/cancel, tasks/resubscribe", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const a2a = yield* legacyClient(host.url)
        const first = (yield* Effect.promise(() => a2a.sendMessage(send("hello old peer")))) as Task
        assert.strictEqual(first.status?.state, TaskState.TASK_STATE_COMPLETED)
        assert.include(replyOf(first), "hello old peer")
        assert.include(replyOf(first), "turn 1")
        // The contextId is the session for 0.3 peers too.
        const events: Array<StreamResponse> = []
        yield* Effect.promise(async () => {
          for await (const event of a2a.sendMessageStream(send("again", first.contextId))) events.push(event)
        })
        assert.strictEqual(events[0]?.payload?.$case, "task")
        const last = events.at(-1)?.payload
        assert.strictEqual(last?.$case, "statusUpdate")
        if (last?.$case === "statusUpdate") {
          assert.strictEqual(last.value.status?.state, TaskState.TASK_STATE_COMPLETED)
          const reply = last.value.status?.message?.parts[0]?.content
          assert.include(reply?.$case === "text" ? reply.value : "", "turn 2")
        }
        const got = yield* Effect.promise(() => a2a.getTask({ tenant: "", id: first.id }))
        assert.strictEqual(got.status?.state, TaskState.TASK_STATE_COMPLETED)
        const failures = yield* Effect.promise(async () => {
          // An error on the event stream comes wrapped, the typed error as its cause.
          const name = (p: Promise<unknown>) =>
            p.then(() => "ok", (e: Error) => (e.cause instanceof Error ? e.cause : e).name)
          return {
            cancel: await name(a2a.cancelTask({ tenant: "", id: first.id, metadata: {} })),
            resubscribe: await name((async () => {
              for await (const _ of a2a.resubscribeTask({ tenant: "", id: first.id })) return
            })()),
            unknown: await name(a2a.getTask({ tenant: "", id: crypto.randomUUID() }))
          }
        })
        assert.deepStrictEqual(failures, {
          cancel: "TaskNotCancelableError",
          resubscribe: "UnsupportedOperationError",
          unknown: "TaskNotFoundError"
        })
      }))

    it.effect("the 0.3 wire as a peer sends it, without A2A-Version; 1.0 names still need the header", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/a2a`
        const sent = yield* rpc(url, {
          jsonrpc: "2.0",
          id: "a",
          method: "message/send",
          params: {
            message: { kind: "message", messageId: "m1", role: "user", parts: [{ kind: "text", text: "plain 0.3" }] }
          }
        })
        assert.strictEqual(sent.status, 200)
        const result = JSON.parse(sent.body).result
        assert.strictEqual(result.kind, "task")
        assert.strictEqual(result.status.state, "completed")
        assert.include(result.status.message.parts[0].text, "plain 0.3")
        // A 1.0 method name without the header is a 0.3 request: not found there.
        const v1Name = yield* rpc(url, { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: result.id } })
        assert.strictEqual(JSON.parse(v1Name.body).error.code, -32601)
        // 0.3's resubscribe fails on the event stream, as 0.3 clients read it.
        const resubscribe = yield* rpc(url, { jsonrpc: "2.0", id: 2, method: "tasks/resubscribe", params: { id: "x" } })
        assert.include(resubscribe.type, "text/event-stream")
        assert.include(resubscribe.body, "-32001")
        const bad = yield* rpc(url, { jsonrpc: "2.0", id: 3, method: "message/send", params: [] })
        assert.isBelow(bad.status, 500)
        assert.strictEqual(JSON.parse(bad.body).error.code, -32602)
      }))
  })

  layer(TestHost.layer({ channels: [A2A.make({ v03: false })] }))((it) => {
    it.effect("off: no 0.3 card fields, and a request without A2A-Version gets the version error", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const old = yield* getJson(`${host.url}/.well-known/agent-card.json`)
        assert.isUndefined(old.url)
        assert.lengthOf(old.supportedInterfaces, 1)
        const sent = yield* rpc(`${host.url}/a2a`, {
          jsonrpc: "2.0",
          id: 1,
          method: "message/send",
          params: { message: { kind: "message", messageId: "m", role: "user", parts: [{ kind: "text", text: "x" }] } }
        })
        assert.isBelow(sent.status, 500)
        assert.include(JSON.parse(sent.body).error.message, "version")
      }))
  })
})
