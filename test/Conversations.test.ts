/**
 * The Conversations API through the official `openai` Node client (create/retrieve/update/delete, items
 * list/create/retrieve/delete and the list's auto-pagination), responses that name a `conversation` (JSON, SSE and
 * WebSocket), the bounds and bad inputs (4xx in OpenAI's error shape), isolation by user key (404, never 403), and
 * a conversation continued after a restart on the same SQLite state (and Postgres). The agent answers with what it was given, so
 * each test sees exactly which items reached the turn.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import OpenAI from "openai"
import { WebSocket } from "ws"
import * as Responses from "../src/channels/Responses/index.js"
import * as Agent from "../src/core/Agent.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import type { Message } from "../src/domain/Message.js"
import * as Persistence from "../src/state/Persistence.js"
import * as Postgres from "./utils/Postgres.js"
import * as TempDir from "./utils/TempDir.js"
import * as TestHost from "./utils/TestHost.js"

const textOf = (message: Message) =>
  message.contents.map((c) => c._tag === "text" ? c.text : c._tag === "function_call" ? `call:${c.name}` : "").join("")

/** Answers `saw: <every message it was given, history then input, joined by " | ">`. */
const echoAgent = Agent.layer(Agent.make({
  name: "echo",
  run: (turn) =>
    Effect.succeed({
      messages: [{
        role: "assistant",
        contents: [{ _tag: "text", text: `saw: ${[...turn.history, ...turn.input].map(textOf).join(" | ")}` }]
      }],
      finishReason: "stop"
    })
}))

const clientFor = (url: string, user?: string) =>
  new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: "unused",
    maxRetries: 0,
    ...(user === undefined ? {} : { defaultHeaders: { "x-agent-user-isolation-key": user } })
  })

const outputText = (response: { readonly output: ReadonlyArray<unknown> }) =>
  response.output.flatMap((item) => {
    const i = item as { type: string; content?: ReadonlyArray<{ type: string; text?: string }> }
    return i.type === "message" ? (i.content ?? []).map((c) => c.text ?? "") : []
  }).join("")

const user = (text: string) => ({ type: "message" as const, role: "user" as const, content: text })

const itemText = (item: unknown) => {
  const i = item as { type: string; content?: ReadonlyArray<{ text?: string }> }
  return (i.content ?? []).map((c) => c.text ?? "").join("")
}

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** The HTTP status and body of a failed call (the client throws an APIError). */
const failure = (f: () => Promise<unknown>) =>
  Effect.promise(async () => {
    try {
      await f()
    } catch (error) {
      if (error instanceof OpenAI.APIError) return { status: error.status, error: error.error as any }
      throw error
    }
    throw new Error("the call succeeded")
  })

const raw = (url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const r = await fetch(`${url}/v1${path}`, {
      method,
      headers: { "content-type": "application/json", ...headers },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
    })
    const text = await r.text()
    return { status: r.status, text, body: (text.startsWith("{") ? JSON.parse(text) : {}) as any }
  })

const hostLayer = TestHost.layer({
  channels: [Responses.make({ maxConversationItems: 60 })],
  target: echoAgent,
  settings: { trustIsolationHeaders: true }
})

describe("Conversations", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("the official client: create, retrieve, update, items create/list/retrieve/delete, delete", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const created = yield* promise(() =>
          client.conversations.create({ items: [user("first"), user("second")], metadata: { topic: "demo" } })
        )
        assert.match(created.id, /^conv_[0-9a-f]{32}$/)
        assert.strictEqual(created.object, "conversation")
        assert.deepStrictEqual(created.metadata, { topic: "demo" })
        assert.isTrue(Number.isInteger(created.created_at))
        const empty = yield* promise(() => client.conversations.create())
        assert.deepStrictEqual(empty.metadata, {})

        const got = yield* promise(() => client.conversations.retrieve(created.id))
        assert.deepStrictEqual(got, created)
        const updated = yield* promise(() => client.conversations.update(created.id, { metadata: { topic: "new" } }))
        assert.deepStrictEqual(updated.metadata, { topic: "new" })

        // 20 + 5 more items: 27 in all
        const batch = Array.from({ length: 20 }, (_, i) => user(`a${i}`))
        const added = yield* promise(() => client.conversations.items.create(created.id, { items: batch }))
        assert.strictEqual(added.object, "list")
        assert.strictEqual(added.data.length, 20)
        assert.strictEqual(added.first_id, added.data[0]!.id)
        yield* promise(() =>
          client.conversations.items.create(created.id, { items: Array.from({ length: 5 }, (_, i) => user(`b${i}`)) })
        )
        // the client's auto-pagination: pages of 10, each asking for the items after the last one
        const all = yield* promise(async () => {
          const out: Array<unknown> = []
          for await (const item of client.conversations.items.list(created.id, { limit: 10, order: "asc" })) {
            out.push(item)
          }
          return out
        })
        assert.deepStrictEqual(all.map(itemText), [
          "first",
          "second",
          ...batch.map((b) => b.content),
          "b0",
          "b1",
          "b2",
          "b3",
          "b4"
        ])
        const ids = all.map((item) => (item as { id: string }).id)
        assert.strictEqual(new Set(ids).size, 27, "item ids are unique")
        const newestFirst = yield* promise(() => client.conversations.items.list(created.id, { limit: 3 }))
        assert.deepStrictEqual(newestFirst.data.map(itemText), ["b4", "b3", "b2"])
        assert.isTrue(newestFirst.has_more)

        const one = yield* promise(() => client.conversations.items.retrieve(ids[1]!, { conversation_id: created.id }))
        assert.deepStrictEqual(one, all[1])
        assert.strictEqual((one as { role: string }).role, "user")
        const afterDelete = yield* promise(() =>
          client.conversations.items.delete(ids[1]!, { conversation_id: created.id })
        )
        assert.strictEqual(afterDelete.id, created.id)
        assert.strictEqual(afterDelete.object, "conversation")
        const gone = yield* failure(() => client.conversations.items.retrieve(ids[1]!, { conversation_id: created.id }))
        assert.strictEqual(gone.status, 404)

        const deleted = yield* promise(() => client.conversations.delete(created.id))
        assert.deepStrictEqual(deleted, { id: created.id, object: "conversation.deleted", deleted: true })
        const missing = yield* failure(() => client.conversations.retrieve(created.id))
        assert.strictEqual(missing.status, 404)
        assert.strictEqual(missing.error.type, "not_found_error")
      }))

    it.effect("a response in a conversation sees its items and adds its own; items changed here reach the next turn", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const conversation = yield* promise(() => client.conversations.create({ items: [user("my name is Ann")] }))

        const first = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "hi" }))
        assert.deepStrictEqual(first.conversation, { id: conversation.id })
        assert.strictEqual(outputText(first), "saw: my name is Ann | hi")
        const listed = yield* promise(() => client.conversations.items.list(conversation.id, { order: "asc" }))
        assert.deepStrictEqual(listed.data.map(itemText), ["my name is Ann", "hi", "saw: my name is Ann | hi"])
        assert.strictEqual(listed.data[2]!.id, first.output[0]!.id, "output items keep their ids")

        // the next turn continues the conversation's session ({ id } form, streamed)
        const stream = client.responses.stream({ conversation: { id: conversation.id }, input: "again" })
        const second = yield* promise(() => stream.finalResponse())
        assert.strictEqual(outputText(second), "saw: my name is Ann | hi | saw: my name is Ann | hi | again")

        // an item added through the API, and one deleted: the next turn sees exactly the items
        yield* promise(() => client.conversations.items.create(conversation.id, { items: [user("note: blue")] }))
        yield* promise(() =>
          client.conversations.items.delete(listed.data[0]!.id!, { conversation_id: conversation.id })
        )
        const third = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "now?" }))
        assert.strictEqual(
          outputText(third),
          "saw: hi | saw: my name is Ann | hi | again | saw: my name is Ann | hi | saw: my name is Ann | hi | again | " +
            "note: blue | now?"
        )
        const count = (yield* promise(() =>
          client.conversations.items.list(conversation.id, { limit: 100 })
        )).data.length
        assert.strictEqual(count, 7)
      }))

    it.effect("WebSocket mode: a response.create with conversation appends to it", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const conversation = yield* promise(() => client.conversations.create({ items: [user("context")] }))
        const events = yield* Effect.promise(() =>
          new Promise<Array<any>>((resolve, reject) => {
            const socket = new WebSocket(`${url.replace("http", "ws")}/v1/responses`)
            const seen: Array<any> = []
            socket.on(
              "open",
              () => socket.send(JSON.stringify({ type: "response.create", conversation: conversation.id, input: "ws" }))
            )
            socket.on("message", (data) => {
              const event = JSON.parse(String(data))
              seen.push(event)
              if (event.type === "response.completed" || event.type === "error") {
                socket.close()
                resolve(seen)
              }
            })
            socket.on("error", reject)
          })
        )
        const done = events[events.length - 1]
        assert.strictEqual(done.type, "response.completed", JSON.stringify(done))
        assert.strictEqual(outputText(done.response), "saw: context | ws")
        const items = yield* promise(() => client.conversations.items.list(conversation.id, { order: "asc" }))
        assert.deepStrictEqual(items.data.map(itemText), ["context", "ws", "saw: context | ws"])
      }))

    it.effect("bad input: 4xx in OpenAI's error shape, naming what is wrong", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const conversation = yield* promise(() => client.conversations.create())
        const check = (
          result: { readonly status: number; readonly body: any },
          status: number,
          param: string | null,
          includes: string
        ) => {
          assert.strictEqual(result.status, status, JSON.stringify(result.body))
          assert.strictEqual(result.body.error.param, param, JSON.stringify(result.body))
          assert.include(result.body.error.message, includes)
          assert.isString(result.body.error.type)
        }
        check(
          yield* raw(url, "POST", "/responses", {
            input: "x",
            conversation: conversation.id,
            previous_response_id: "r"
          }),
          400,
          "conversation",
          "not both"
        )
        check(
          yield* raw(url, "POST", "/responses", { input: "x", conversation: "conv_nope" }),
          404,
          "conversation",
          "conv_nope"
        )
        check(
          yield* raw(url, "POST", "/responses", { input: "x", stream: true, conversation: "c" }),
          404,
          "conversation",
          "'c'"
        )
        check(
          yield* raw(url, "POST", "/conversations", { items: Array.from({ length: 21 }, () => user("x")) }),
          400,
          "items",
          "1 to 20"
        )
        check(yield* raw(url, "POST", "/conversations", { items: "x" }), 400, "items", "list")
        check(yield* raw(url, "POST", "/conversations", { items: [{ type: "nope" }] }), 400, "items[0].type", "nope")
        const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]))
        check(yield* raw(url, "POST", "/conversations", { metadata: many }), 400, "metadata", "16")
        check(yield* raw(url, "POST", "/conversations", { metadata: { k: 1 } }), 400, "metadata", "string")
        check(yield* raw(url, "POST", "/conversations", { metadata: { k: "v".repeat(513) } }), 400, "metadata", "512")
        check(yield* raw(url, "POST", "/conversations", "{not json"), 400, null, "JSON")
        check(yield* raw(url, "POST", `/conversations/${conversation.id}`, {}), 400, "metadata", "required")
        check(yield* raw(url, "POST", `/conversations/${conversation.id}/items`, {}), 400, "items", "required")
        check(
          yield* raw(url, "POST", `/conversations/${conversation.id}/items`, { items: [] }),
          400,
          "items",
          "1 to 20"
        )
        const path = `/conversations/${conversation.id}/items`
        check(yield* raw(url, "GET", `${path}?limit=0`), 400, "limit", "between 1 and 100")
        check(yield* raw(url, "GET", `${path}?limit=101`), 400, "limit", "between 1 and 100")
        check(yield* raw(url, "GET", `${path}?order=up`), 400, "order", "asc or desc")
        check(yield* raw(url, "GET", `${path}?after=msg_nope`), 400, "after", "msg_nope")
        check(yield* raw(url, "GET", `${path}/msg_nope`), 404, null, "msg_nope")
        check(yield* raw(url, "DELETE", `${path}/msg_nope`), 404, null, "msg_nope")
        check(yield* raw(url, "DELETE", "/conversations/conv_nope"), 404, null, "conv_nope")
        check(yield* raw(url, "POST", "/conversations/conv_nope", { metadata: {} }), 404, null, "conv_nope")
        check(yield* raw(url, "GET", "/conversations/conv_nope/items"), 404, null, "conv_nope")
        const unsupported = yield* raw(url, "POST", "/conversations", {}, { "content-type": "text/plain" })
        assert.strictEqual(unsupported.status, 415)
        // metadata null clears it
        yield* promise(() => client.conversations.update(conversation.id, { metadata: { a: "b" } }))
        const cleared = yield* promise(() => client.conversations.update(conversation.id, { metadata: null }))
        assert.deepStrictEqual(cleared.metadata, {})
      }))

    it.effect("a conversation holds at most maxConversationItems: adding past it is a 400 naming the bound", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const conversation = yield* promise(() =>
          client.conversations.create({ items: Array.from({ length: 20 }, (_, i) => user(`${i}`)) })
        )
        for (let i = 0; i < 2; i++) {
          yield* promise(() =>
            client.conversations.items.create(conversation.id, { items: Array.from({ length: 20 }, () => user("x")) })
          )
        }
        const over = yield* failure(() => client.conversations.items.create(conversation.id, { items: [user("one")] }))
        assert.strictEqual(over.status, 400)
        assert.strictEqual(over.error.code, "conversation_too_long")
        assert.include(over.error.message, "at most 60")
        const turn = yield* failure(() => client.responses.create({ conversation: conversation.id, input: "more" }))
        assert.strictEqual(turn.status, 400)
        assert.include(turn.error.message, "at most 60")
        // deleting makes room
        const page = yield* promise(() => client.conversations.items.list(conversation.id, { limit: 2 }))
        for (const item of page.data) {
          yield* promise(() => client.conversations.items.delete(item.id!, { conversation_id: conversation.id }))
        }
        const ok = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "fits" }))
        assert.strictEqual(ok.status, "completed")
      }))

    it.effect("another user's conversation is missing (404, the same body as an unknown id) on every route", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const alice = clientFor(url, "alice")
        const conversation = yield* promise(() => alice.conversations.create({ items: [user("alice's secret")] }))
        const item = (yield* promise(() => alice.conversations.items.list(conversation.id))).data[0]!
        const unknown = "conv_00000000000000000000000000000000"
        const bob = { "x-agent-user-isolation-key": "bob" }
        const routes: ReadonlyArray<readonly [string, string, unknown?]> = [
          ["GET", "/conversations/ID"],
          ["POST", "/conversations/ID", { metadata: {} }],
          ["DELETE", "/conversations/ID"],
          ["GET", "/conversations/ID/items"],
          ["POST", "/conversations/ID/items", { items: [user("x")] }],
          ["GET", `/conversations/ID/items/${item.id}`],
          ["DELETE", `/conversations/ID/items/${item.id}`]
        ]
        for (const [method, path, body] of routes) {
          const theirs = yield* raw(url, method, path.replace("ID", conversation.id), body, bob)
          const nobodys = yield* raw(url, method, path.replace("ID", unknown), body, bob)
          assert.strictEqual(theirs.status, 404, `${method} ${path}`)
          assert.strictEqual(theirs.text, nobodys.text.replaceAll(unknown, conversation.id), `${method} ${path}`)
        }
        const turn = yield* raw(url, "POST", "/responses", { input: "tell me", conversation: conversation.id }, bob)
        assert.strictEqual(turn.status, 404)
        // without a user key: also not hers
        assert.strictEqual((yield* raw(url, "GET", `/conversations/${conversation.id}`)).status, 404)
        // still all hers
        const mine = yield* promise(() => alice.conversations.items.list(conversation.id))
        assert.strictEqual(mine.data.length, 1)
        const reply = yield* promise(() => alice.responses.create({ conversation: conversation.id, input: "ok" }))
        assert.strictEqual(outputText(reply), "saw: alice's secret | ok")
      }))

    it.effect("previous_response_id on a conversation's response continues that response, not the conversation", () =>
      Effect.gen(function*() {
        const { url } = yield* AgentHost.AgentHost
        const client = clientFor(url)
        const conversation = yield* promise(() => client.conversations.create())
        const first = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "one" }))
        const branch = yield* promise(() => client.responses.create({ previous_response_id: first.id, input: "aside" }))
        assert.strictEqual(outputText(branch), "saw: one | saw: one | aside")
        // the conversation does not get the branch, and its next turn does not see it
        const next = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "two" }))
        assert.strictEqual(outputText(next), "saw: one | saw: one | two")
      }))
  })
})

describe("Conversations on persistent state", () => {
  const hostOn = (settings: Persistence.PersistenceSettings) =>
    HostLayers.layerWithCore({ channels: [Responses.make()] }).pipe(
      Layer.provide(echoAgent),
      Layer.provideMerge(Persistence.layer(settings)),
      Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
    )

  const restart = (settings: Persistence.PersistenceSettings) =>
    Effect.gen(function*() {
      const before = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(hostOn(settings))
        const client = clientFor(Context.get(context, AgentHost.AgentHost).url)
        const conversation = yield* promise(() => client.conversations.create({ items: [user("remember 7")] }))
        const reply = yield* promise(() => client.responses.create({ conversation: conversation.id, input: "ok" }))
        assert.strictEqual(outputText(reply), "saw: remember 7 | ok")
        return conversation.id
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(hostOn(settings))
        const client = clientFor(Context.get(context, AgentHost.AgentHost).url)
        const items = yield* promise(() => client.conversations.items.list(before, { order: "asc" }))
        assert.deepStrictEqual(items.data.map(itemText), ["remember 7", "ok", "saw: remember 7 | ok"])
        const reply = yield* promise(() => client.responses.create({ conversation: before, input: "what number?" }))
        assert.strictEqual(outputText(reply), "saw: remember 7 | ok | saw: remember 7 | ok | what number?")
      }))
    })

  it.scoped("SQLite: a conversation created, the host restarted on the same state dir, continued", () =>
    Effect.flatMap(TempDir.make(), (stateDir) => restart({ ...Persistence.defaults, stateDir })))

  it.scoped("Postgres (AGENT_HOST_STATE=postgres): the same across a restart on the same database", () =>
    Effect.flatMap(
      Postgres.database,
      (url) => restart({ ...Persistence.defaults, mode: "postgres", databaseUrl: Option.some(Redacted.make(url)) })
    ))
})
