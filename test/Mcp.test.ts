import { assert, describe, layer } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Effect } from "effect"
import { Mcp } from "../src/channels/Mcp/index.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as TestHost from "./utils/TestHost.js"

// The official client, connected (initialize + initialized) for the test's scope.
const connect = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new Client({ name: "test", version: "1.0.0" })
      await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }))
      return client
    }),
    (client) => Effect.promise(() => client.close())
  )

const textOf = (result: CallToolResult): string => result.content.map((c) => (c.type === "text" ? c.text : "")).join("")

const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers }
    }).then(async (r) => ({ status: r.status, body: await r.text() }))
  )

describe("Mcp", () => {
  layer(TestHost.layer({ channels: [Mcp.make()] }))((it) => {
    it.scoped("lists the ask tool and answers a call, continuing the session it returns", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(`${host.url}/mcp`)
        const { tools } = yield* Effect.promise(() => client.listTools())
        assert.deepStrictEqual(tools.map((t) => t.name), ["ask"])
        assert.deepStrictEqual(tools[0]!.inputSchema.required, ["prompt"])
        const first = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "hello there" } })
        )) as CallToolResult
        assert.isUndefined(first.isError)
        assert.include(textOf(first), "hello there")
        assert.include(textOf(first), "turn 1")
        const session = (first.structuredContent as { session: string }).session
        assert.match(session, /^mcp_[0-9a-f]{32}$/)
        const second = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "and again", session } })
        )) as CallToolResult
        assert.include(textOf(second), "turn 2")
        assert.strictEqual((second.structuredContent as { session: string }).session, session)
        // Another new conversation starts at turn 1 again.
        const other = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "fresh" } })
        )) as CallToolResult
        assert.include(textOf(other), "turn 1")
        assert.notStrictEqual((other.structuredContent as { session: string }).session, session)
      }))

    it.scoped("sends progress notifications while the turn streams", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(`${host.url}/mcp`)
        const progress: Array<{ progress: number; message?: string | undefined }> = []
        const result = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "stream this please" } }, undefined, {
            onprogress: (p) => {
              progress.push(p)
            }
          })
        )) as CallToolResult
        assert.isAbove(progress.length, 0)
        assert.deepStrictEqual(
          progress.map((p) => p.progress),
          progress.map((_, i) =>
            i + 1
          )
        )
        assert.strictEqual(progress.map((p) => p.message ?? "").join(""), textOf(result))
        assert.include(textOf(result), "stream this please")
      }))

    it.scoped("answers bad arguments and unknown tools as errors, not crashes", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = yield* connect(`${host.url}/mcp`)
        const missing = (yield* Effect.promise(() => client.callTool({ name: "ask", arguments: {} }))) as CallToolResult
        assert.isTrue(missing.isError)
        assert.include(textOf(missing), "prompt is required")
        const badSession = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "x", session: "a\nb" } })
        )) as CallToolResult
        assert.isTrue(badSession.isError)
        assert.include(textOf(badSession), "printable ASCII")
        const unknown = yield* Effect.promise(() =>
          client.callTool({ name: "nope", arguments: {} }).then(() =>
            "resolved", (e: Error) => e.message)
        )
        assert.include(unknown, "unknown tool")
        // Still serving.
        const ok = (yield* Effect.promise(() =>
          client.callTool({ name: "ask", arguments: { prompt: "still up" } })
        )) as CallToolResult
        assert.include(textOf(ok), "still up")
      }))

    it.effect("answers malformed HTTP with 4xx JSON-RPC errors", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const url = `${host.url}/mcp`
        const badJson = yield* post(url, "{nope")
        assert.strictEqual(badJson.status, 400)
        assert.strictEqual(JSON.parse(badJson.body).error.code, -32700)
        const notRpc = yield* post(url, JSON.stringify({ hello: 1 }))
        assert.strictEqual(notRpc.status, 400)
        assert.isNumber(JSON.parse(notRpc.body).error.code)
        const big = yield* post(url, JSON.stringify({ x: "x".repeat(2 * 1024 * 1024) }))
        assert.strictEqual(big.status, 413)
        const noAccept = yield* post(
          url,
          JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
          { accept: "application/json" }
        )
        assert.strictEqual(noAccept.status, 406)
        const get = yield* Effect.promise(() => fetch(url).then((r) => r.status))
        assert.strictEqual(get, 405)
      }))
  })
})

describe("Mcp with API keys", () => {
  layer(TestHost.layer({ channels: [Mcp.make()], settings: { apiKeys: ["k1", "k2"] } }))((it) => {
    it.scoped("needs a key, and scopes sessions to the key", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const denied = yield* post(`${host.url}/mcp`, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }))
        assert.strictEqual(denied.status, 401)
        assert.include(JSON.parse(denied.body).error.message, "API key")
        const one = yield* connect(`${host.url}/mcp`, { authorization: "Bearer k1" })
        const two = yield* connect(`${host.url}/mcp`, { authorization: "Bearer k2" })
        const ask = (client: Client, prompt: string) =>
          Effect.promise(() => client.callTool({ name: "ask", arguments: { prompt, session: "shared-name" } })).pipe(
            Effect.map((r) => textOf(r as CallToolResult))
          )
        assert.include(yield* ask(one, "a"), "turn 1")
        assert.include(yield* ask(one, "b"), "turn 2")
        // The same session name under another key is another conversation.
        assert.include(yield* ask(two, "c"), "turn 1")
      }))
  })
})
