import type { Message, StreamResponse, Task } from "@a2a-js/sdk"
import { Role, TaskState } from "@a2a-js/sdk"
import type { Client } from "@a2a-js/sdk/client"
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } from "@a2a-js/sdk/client"
import { assert, describe, it, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Stream } from "effect"
import { A2A } from "../src/channels/A2A/index.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as TempDir from "./utils/TempDir.js"
import * as TestHost from "./utils/TestHost.js"

const message = (text: string, contextId = "", taskId = ""): Message => ({
  messageId: crypto.randomUUID(),
  contextId,
  taskId,
  role: Role.ROLE_USER,
  parts: [{ content: { $case: "text", value: text }, metadata: {}, filename: "", mediaType: "text/plain" }],
  metadata: {},
  extensions: [],
  referenceTaskIds: []
})

const send = (text: string, contextId = "", returnImmediately = false) => ({
  tenant: "",
  message: message(text, contextId),
  configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately },
  metadata: {}
})

const client = (baseUrl: string, key?: string) =>
  Effect.promise(() => {
    const fetchImpl: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers)
      if (key !== undefined) headers.set("authorization", `Bearer ${key}`)
      return fetch(input, { ...init, headers })
    }
    const factory = new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        transports: [new JsonRpcTransportFactory({ fetchImpl })]
      })
    )
    return factory.createFromUrl(baseUrl)
  })

const replyOf = (task: Task): string => {
  const content = task.status?.message?.parts[0]?.content
  return content?.$case === "text" ? content.value : ""
}

const asTask = (result: Message | Task): Task => {
  assert.isTrue("status" in result, "the result is a task")
  return result as Task
}

const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", "a2a-version": "1.0", ...headers }
    })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

describe("A2A", () => {
  layer(TestHost.layer({ channels: [A2A.make({ agentName: "Echo", description: "echoes" })] }))((it) => {
    it.effect("serves the card; send, get and list go through the SDK client; the contextId is the session", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const card = yield* Effect.promise(() =>
          fetch(`${host.url}/.well-known/agent-card.json`).then((r) => r.json() as Promise<Record<string, any>>)
        )
        assert.strictEqual(card.name, "Echo")
        assert.strictEqual(card.supportedInterfaces[0].url, `${host.url}/a2a`)
        assert.strictEqual(card.skills[0].id, "chat")
        const a2a = yield* client(host.url)
        const first = asTask(yield* Effect.promise(() => a2a.sendMessage(send("hello a2a"))))
        assert.strictEqual(first.status?.state, TaskState.TASK_STATE_COMPLETED)
        assert.include(replyOf(first), "hello a2a")
        assert.include(replyOf(first), "turn 1")
        assert.match(first.contextId, /^[0-9a-f-]{36}$/)
        const second = asTask(yield* Effect.promise(() => a2a.sendMessage(send("again", first.contextId))))
        assert.include(replyOf(second), "turn 2")
        const got = yield* Effect.promise(() => a2a.getTask({ tenant: "", id: first.id }))
        assert.strictEqual(got.status?.state, TaskState.TASK_STATE_COMPLETED)
        const artifact = got.artifacts[0]?.parts[0]?.content
        assert.strictEqual(artifact?.$case === "text" ? artifact.value : "", replyOf(first))
        const listed = yield* Effect.promise(() =>
          a2a.listTasks({
            tenant: "",
            contextId: first.contextId,
            status: TaskState.TASK_STATE_UNSPECIFIED,
            pageToken: "",
            statusTimestampAfter: undefined
          })
        )
        assert.deepStrictEqual(listed.tasks.map((t) => t.id).sort(), [first.id, second.id].sort())
      }))

    it.effect("streams the reply as task, status and artifact events", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const a2a = yield* client(host.url)
        const events: Array<StreamResponse> = []
        yield* Effect.promise(async () => {
          for await (const event of a2a.sendMessageStream(send("stream it"))) events.push(event)
        })
        const cases = events.map((e) => e.payload?.$case)
        assert.strictEqual(cases[0], "task")
        assert.include(cases, "artifactUpdate")
        const last = events.at(-1)!.payload
        assert.strictEqual(last?.$case, "statusUpdate")
        if (last?.$case === "statusUpdate") assert.strictEqual(last.value.status?.state, TaskState.TASK_STATE_COMPLETED)
      }))

    it.effect("answers bad requests with JSON-RPC errors, never 5xx", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/a2a`
        const badJson = yield* post(url, "{nope")
        assert.strictEqual(badJson.status, 400)
        assert.strictEqual(JSON.parse(badJson.body).error.code, -32700)
        const batch = yield* post(url, "[]")
        assert.strictEqual(batch.status, 400)
        const unknown = yield* post(url, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "Nope", params: {} }))
        assert.isBelow(unknown.status, 500)
        assert.strictEqual(JSON.parse(unknown.body).error.code, -32601)
        const missing = yield* post(
          url,
          JSON.stringify({ jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: "x" } })
        )
        assert.isBelow(missing.status, 500)
        assert.isNumber(JSON.parse(missing.body).error.code)
        const noMessage = yield* post(url, JSON.stringify({ jsonrpc: "2.0", id: 3, method: "SendMessage", params: {} }))
        assert.isBelow(noMessage.status, 500)
        assert.isNumber(JSON.parse(noMessage.body).error.code)
        const big = yield* post(url, JSON.stringify({ x: "x".repeat(2 * 1024 * 1024) }))
        assert.strictEqual(big.status, 413)
      }))
  })
})

// A turn that waits until interrupted, recording that it was.
const holdingAgent = (interrupted: Deferred.Deferred<void>) =>
  Agent.make({
    name: "holding",
    stream: () =>
      Stream.fromEffect(Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, void 0))) as Stream.Stream<
        never
      >
  })

describe("A2A cancel", () => {
  it.scopedLive("the card names the target; CancelTask interrupts the running turn", () =>
    Effect.gen(function*() {
      const interrupted = yield* Deferred.make<void>()
      const ctx = yield* Layer.build(TestHost.layer({
        channels: [A2A.make()],
        target: Agent.layer(holdingAgent(interrupted))
      }))
      const host = ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      // Not configured: the card names the hosted target.
      const card = yield* Effect.promise(() =>
        fetch(`${host.url}/.well-known/agent-card.json`).then((r) => r.json() as Promise<Record<string, any>>)
      )
      assert.strictEqual(card.name, "holding")
      assert.include(card.description, `agent "holding"`)
      const a2a = yield* client(host.url)
      const started = asTask(yield* Effect.promise(() => a2a.sendMessage(send("wait", "", true))))
      assert.notStrictEqual(started.status?.state, TaskState.TASK_STATE_COMPLETED)
      const cancelled = yield* Effect.promise(() => a2a.cancelTask({ tenant: "", id: started.id, metadata: {} }))
      assert.strictEqual(cancelled.status?.state, TaskState.TASK_STATE_CANCELED)
      yield* Deferred.await(interrupted).pipe(Effect.timeout("10 seconds"))
    }))
})

describe("A2A card from the target", () => {
  it.scopedLive("a target's own description and skills fill the card; channel options still win", () =>
    Effect.gen(function*() {
      const described = Agent.make({
        name: "librarian",
        description: "Finds books.",
        skills: [{ id: "search", name: "Search", description: "Searches the catalogue.", tags: ["books"] }],
        run: () => Effect.die("not called")
      })
      const fetchCard = (channel: ReturnType<typeof A2A.make>) =>
        Effect.gen(function*() {
          const ctx = yield* Layer.build(TestHost.layer({ channels: [channel], target: Agent.layer(described) }))
          const host = ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
          return yield* Effect.promise(() =>
            fetch(`${host.url}/.well-known/agent-card.json`).then((r) => r.json() as Promise<Record<string, any>>)
          )
        })
      const card = yield* fetchCard(A2A.make())
      assert.strictEqual(card.name, "librarian")
      assert.strictEqual(card.description, "Finds books.")
      assert.deepStrictEqual(card.skills.map((skill: any) => [skill.id, skill.name, skill.tags]), [[
        "search",
        "Search",
        ["books"]
      ]])
      const configured = yield* fetchCard(
        A2A.make({ description: "Configured.", skills: [{ id: "x", name: "X", description: "x" }] })
      )
      assert.strictEqual(configured.description, "Configured.")
      assert.deepStrictEqual(configured.skills.map((skill: any) => skill.id), ["x"])
    }))
})

describe("A2A restart and keys", () => {
  it.scopedLive("a task is read back after a restart; tasks are scoped per API key", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make("a2a-restart-")
      const start = Effect.gen(function*() {
        const ctx = yield* Layer.build(TestHost.layer({
          channels: [A2A.make()],
          store: SqliteStateStore.layer({ directory: dir }).pipe(Layer.orDie),
          settings: { apiKeys: ["k1", "k2"] }
        }))
        return ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      })
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const host = yield* start
        const denied = yield* post(`${host.url}/a2a`, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask" }))
        assert.strictEqual(denied.status, 401)
        const a2a = yield* client(host.url, "k1")
        return asTask(yield* Effect.promise(() => a2a.sendMessage(send("remember me"))))
      }))
      const host = yield* start
      const a2a: Client = yield* client(host.url, "k1")
      const got = yield* Effect.promise(() => a2a.getTask({ tenant: "", id: first.id }))
      assert.strictEqual(got.status?.state, TaskState.TASK_STATE_COMPLETED)
      assert.include(replyOf(got), "remember me")
      // The conversation goes on after the restart.
      const next = asTask(yield* Effect.promise(() => a2a.sendMessage(send("still there?", first.contextId))))
      assert.include(replyOf(next), "turn 2")
      // Another key sees neither the task nor the conversation.
      const other = yield* client(host.url, "k2")
      const hidden = yield* Effect.promise(() =>
        other.getTask({ tenant: "", id: first.id }).then(() => "found", (e: Error) => e.message)
      )
      assert.notStrictEqual(hidden, "found")
      const theirs = asTask(yield* Effect.promise(() => other.sendMessage(send("hi", first.contextId))))
      assert.include(replyOf(theirs), "turn 1")
    }))
})
