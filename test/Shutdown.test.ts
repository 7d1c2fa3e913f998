/**
 * Graceful shutdown at the layer level, on the TestClock: closing the host's scope turns readiness unready and
 * refuses new requests with a 503 at once, gives in-flight turns AGENT_HOST_SHUTDOWN_GRACE, then stops them:
 * a Responses stream ends with `response.incomplete` and is stored so, a blocking request gets a 503. The
 * user's message is in the history while the turn runs; a turn finishing within the grace completes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Scope, Stream, TestClock } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as Agent from "../src/core/Agent.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import type { Turn } from "../src/core/Target.js"
import type { AgentResponseUpdate, Message } from "../src/domain/Message.js"
import * as StateStore from "../src/state/StateStore.js"
import * as SseFrames from "./utils/SseFrames.js"

const grace = Duration.seconds(30)

const text = (t: string): AgentResponseUpdate => ({
  messageId: "m1",
  role: "assistant",
  contents: [{ _tag: "text", text: t }]
})

/** Says "first", then " second" once the gate opens; records every turn it sees. */
const gatedAgent = (gate: Deferred.Deferred<void>, seen: Array<Turn>) =>
  Agent.make({
    name: "gated",
    stream: (turn) => {
      seen.push(turn)
      return Stream.make(text("first")).pipe(
        Stream.concat(Stream.fromEffect(Effect.as(Deferred.await(gate), text(" second"))))
      )
    }
  })

// The shared reader, with `ended` as a flag the polling waits can read.
const collect = (response: Response) => {
  const stream = SseFrames.collect(response)
  let ended = false
  void stream.ended.finally(() => {
    ended = true
  })
  return { frames: stream.frames, ended: () => ended }
}

// Real I/O is awaited on the wall clock: the TestClock only drives the host's grace.
const waitFor = (what: string, done: () => boolean | Promise<boolean>) =>
  Effect.promise(async () => {
    for (let i = 0; i < 500; i++) {
      if (await done()) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error(`timed out waiting for ${what}`)
  })

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

/** The host without a server of its own (`listen: false`) behind a plain node server, in a scope the test closes. */
const start = (gate: Deferred.Deferred<void>, seen: Array<Turn>) =>
  Effect.gen(function*() {
    const layer = AgentHost.layer({ channels: [Responses.make(), Invocations.make()], listen: false }).pipe(
      Layer.provideMerge(HostLayers.layerCore),
      Layer.provide(Agent.layer(gatedAgent(gate, seen))),
      Layer.provideMerge(StateStore.layerMemory),
      Layer.provide(HostConfig.layer({ shutdownGrace: grace }))
    )
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    const server = Http.createServer(Context.get(context, AgentHost.AgentHost).handler)
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.sync(() => {
          server.closeAllConnections()
          server.close()
        })
    )
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { url, scope, store: Context.get(context, StateStore.StateStore) }
  })

const userTexts = (messages: ReadonlyArray<Message>) =>
  messages.map((m) => `${m.role}:${m.contents.map((c) => c._tag === "text" ? c.text : "").join("")}`)

describe("graceful shutdown", () => {
  it.scoped("refuses new work at once, gives turns the grace, then ends them and keeps what they have", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const seen: Array<Turn> = []
      const host = yield* start(gate, seen)
      const stream = collect(
        yield* Effect.promise(() => post(`${host.url}/v1/responses`, { input: "hi", stream: true }))
      )
      yield* waitFor("the first word", () => stream.frames.some((f) => f.event === "response.output_text.delta"))
      const id = JSON.parse(stream.frames[0]!.data).response.id as string
      const blocking = post(`${host.url}/invocations`, { message: "hi", session_id: "blocking-session" })
      yield* waitFor("the blocking turn", () => seen.length === 2)

      // The user's message is in the history while the turn runs; the turn saw it once, as its input.
      assert.deepStrictEqual(userTexts(yield* host.store.loadHistory(`responses:${id}`)), ["user:hi"])
      assert.deepStrictEqual(seen[0]!.history, [])

      const closing = yield* Effect.fork(Scope.close(host.scope, Exit.void))
      // Readiness turns unready and new requests are refused, while the turns are still in their grace.
      yield* waitFor("readiness to turn unready", () => fetch(`${host.url}/readiness`).then((r) => r.status === 503))
      const readiness = yield* Effect.promise(() => fetch(`${host.url}/readiness`))
      assert.deepStrictEqual(yield* Effect.promise(() => readiness.json()), { status: "draining" })
      assert.strictEqual(readiness.headers.get("retry-after"), "5")
      // The process is still alive while it drains: liveness says so (a restart now would cut the grace short).
      assert.strictEqual((yield* Effect.promise(() => fetch(`${host.url}/liveness`))).status, 200)
      const refused = yield* Effect.promise(() => post(`${host.url}/v1/responses`, { input: "more" }))
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.headers.get("retry-after"), "5")
      assert.strictEqual((yield* Effect.promise(() => refused.json())).error.type, "shutting_down")
      assert.isFalse(stream.ended())
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))

      // The grace is over: the stream ends with response.incomplete, the blocking request gets a 503.
      yield* TestClock.adjust(grace)
      yield* waitFor("the stream to end", () => stream.ended())
      const last = stream.frames[stream.frames.length - 1]!
      assert.strictEqual(last.event, "response.incomplete")
      const answer = yield* Effect.promise(() => blocking)
      assert.strictEqual(answer.status, 503)
      assert.strictEqual(answer.headers.get("retry-after"), "5")
      assert.strictEqual((yield* Effect.promise(() => answer.json())).error.type, "TurnCancelled")
      yield* Fiber.join(closing)

      const stored = yield* host.store.getResponse(id)
      assert.isTrue(Option.isSome(stored))
      const response = Option.getOrThrow(stored).response as {
        status: string
        incomplete_details: unknown
        output: Array<{ content: Array<{ text: string }> }>
      }
      assert.strictEqual(response.status, "incomplete")
      assert.deepStrictEqual(response.incomplete_details, { reason: "server_shutdown" })
      assert.strictEqual(response.output[0]!.content[0]!.text, "first")
      // The reply never completed: the history keeps the user's message only.
      assert.deepStrictEqual(userTexts(yield* host.store.loadHistory(`responses:${id}`)), ["user:hi"])
    }))

  it.scoped("a turn that finishes within the grace completes normally; its reply follows the input", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const seen: Array<Turn> = []
      const host = yield* start(gate, seen)
      const stream = collect(
        yield* Effect.promise(() => post(`${host.url}/v1/responses`, { input: "hi", stream: true }))
      )
      yield* waitFor("the first word", () => stream.frames.some((f) => f.event === "response.output_text.delta"))
      const id = JSON.parse(stream.frames[0]!.data).response.id as string
      const closing = yield* Effect.fork(Scope.close(host.scope, Exit.void))
      yield* waitFor("readiness to turn unready", () => fetch(`${host.url}/readiness`).then((r) => r.status === 503))
      yield* Deferred.succeed(gate, undefined)
      // No clock adjustment: shutdown goes on as soon as the turn is done.
      yield* Fiber.join(closing)
      yield* waitFor("the stream to end", () => stream.ended())
      const last = stream.frames[stream.frames.length - 1]!
      assert.strictEqual(last.event, "response.completed")
      assert.strictEqual(JSON.parse(last.data).response.output[0].content[0].text, "first second")
      assert.deepStrictEqual(userTexts(yield* host.store.loadHistory(`responses:${id}`)), [
        "user:hi",
        "assistant:first second"
      ])
    }))
})
