/**
 * A streamed turn on an idle session, of a target that gives its updates at once, runs in its request's fiber as
 * the response is written (`StreamExtras.inline`): the session actor still orders it, a client that leaves changes
 * nothing about what is stored, and Responses stores the response with the reply, before the terminal event.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId, Layer } from "effect"
import * as Http from "node:http"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { AgentResponseUpdate, Message } from "../src/domain/Message.js"
import * as RecordingStore from "./utils/RecordingStore.js"
import * as TestHost from "./utils/TestHost.js"

// "wait..." turns complete `entered`, then wait for `gate`.
let entered = Deferred.unsafeMake<void>(FiberId.none)
let gate = Deferred.unsafeMake<void>(FiberId.none)
const closeGate = () => {
  entered = Deferred.unsafeMake<void>(FiberId.none)
  gate = Deferred.unsafeMake<void>(FiberId.none)
}
const openGate = () => Deferred.unsafeDone(gate, Exit.void)

const said = (input: ReadonlyArray<Message>) =>
  input.flatMap((m) => m.contents).map((c) => c._tag === "text" ? c.text : "").join("")

// Answers `<what was said>@<history length>`, in two updates.
const updatesOf = (text: string): ReadonlyArray<AgentResponseUpdate> => [
  { messageId: "m", role: "assistant", contents: [{ _tag: "text", text: text.slice(0, 2) }] },
  { messageId: "m", role: "assistant", contents: [{ _tag: "text", text: text.slice(2) }] },
  { contents: [{ _tag: "usage", usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 } }], finishReason: "stop" }
]

const gated = Agent.layer(Agent.make({
  name: "gated",
  run: (turn) =>
    Effect.succeed({
      messages: [{
        role: "assistant",
        contents: [{ _tag: "text", text: `${said(turn.input)}@${turn.history.length}` }]
      }]
    }),
  updates: (turn) => {
    const text = `${said(turn.input)}@${turn.history.length}`
    if (!text.startsWith("wait")) return Effect.succeed(updatesOf(text))
    const [begun, open] = [entered, gate]
    return Effect.zipRight(
      Effect.zipRight(Deferred.succeed(begun, undefined), Deferred.await(open)),
      Effect.succeed(updatesOf(text))
    )
  }
}))

const post = (url: string, body: Record<string, unknown>) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } }).then(
      async (r) => ({ status: r.status, body: await r.text() })
    )
  )

const get = (url: string) =>
  Effect.promise(() => fetch(url).then(async (r) => ({ status: r.status, body: await r.text() })))

type Event = { readonly type: string; readonly sequence_number: number } & Record<string, unknown>

const eventsOf = (body: string): Array<Event> =>
  body.split("\n\n").filter((frame) => frame.length > 0).map((frame) => {
    const data = frame.split("\n").find((line) => line.startsWith("data: "))!
    return JSON.parse(data.slice(6)) as Event
  })

/** Starts a streamed create, resolves with the response id once `response.created` arrived, and then hangs up. */
const createAndLeave = (url: string, input: string) =>
  Effect.async<string, Error>((resume) => {
    const target = new URL(`${url}/v1/responses`)
    const request = Http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { "content-type": "application/json" }
      },
      (response) => {
        let text = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          text += chunk
          const created = eventsOf(text.slice(0, text.lastIndexOf("\n\n") + 2)).find((e) =>
            e.type === "response.created"
          )
          if (created === undefined) return
          request.destroy()
          resume(Effect.succeed((created["response"] as { readonly id: string }).id))
        })
      }
    )
    request.on("error", () => undefined)
    request.end(JSON.stringify({ model: "m", input, stream: true }))
  })

const until = <A>(poll: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      const value = yield* poll
      if (done(value)) return value
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.die(new Error("condition not reached"))
  })

type Write = RecordingStore.Write

const recording = RecordingStore.layer

describe("streamed turns run inline", () => {
  it.scoped("Responses: the stored response is written with the reply, and the terminal event carries it", () =>
    Effect.gen(function*() {
      const writes: Array<Write> = []
      const context = yield* Layer.build(
        TestHost.layer({ channels: [Responses.make()], target: gated, store: recording(writes) })
      )
      const host = yield* Effect.provide(AgentHost, context)
      const streamed = yield* post(`${host.url}/v1/responses`, { model: "m", input: "hi", stream: true })
      assert.strictEqual(streamed.status, 200, streamed.body)
      // One write waited for: the stored response, committed with (after) the queued appends of input and reply.
      assert.deepStrictEqual(writes.splice(0), ["append (queued)", "append (queued)", "response"])
      const events = eventsOf(streamed.body)
      events.forEach((event, i) => assert.strictEqual(event.sequence_number, i + 1))
      const last = events[events.length - 1]!
      assert.strictEqual(last.type, "response.completed")
      const final = last["response"] as { readonly id: string; readonly output: ReadonlyArray<unknown> }
      const stored = yield* get(`${host.url}/v1/responses/${final.id}`)
      assert.deepStrictEqual(JSON.parse(stored.body), final)
      assert.deepStrictEqual(
        events.filter((e) => e.type === "response.output_text.delta").map((e) => e["delta"]),
        ["hi", "@0"]
      )
    }))

  layer(
    TestHost.layer({
      channels: [Responses.make(), Invocations.make({ name: "queued", path: "/q" })],
      target: gated
    }),
    { excludeTestServices: true }
  )((it) => {
    it.effect("Responses: a client that leaves while its inline turn runs loses nothing", () =>
      Effect.gen(function*() {
        closeGate()
        const host = yield* AgentHost
        const id = yield* createAndLeave(host.url, "wait")
        yield* Deferred.await(entered)
        openGate()
        const done = yield* until(
          get(`${host.url}/v1/responses/${id}`),
          (r) => r.status === 200 && JSON.parse(r.body).status === "completed"
        )
        const output = JSON.parse(done.body).output as ReadonlyArray<
          { readonly content: ReadonlyArray<{ text: string }> }
        >
        assert.strictEqual(output[0]!.content[0]!.text, "wait@0")
        // The session is free again, and its history has the turn.
        const next = yield* post(`${host.url}/v1/responses`, { model: "m", input: "next", previous_response_id: id })
        assert.strictEqual(JSON.parse(next.body).output[0].content[0].text, "next@2")
      }))

    it.effect("Invocations: a turn arriving while an inline stream runs queues behind it and sees its reply", () =>
      Effect.gen(function*() {
        closeGate()
        const host = yield* AgentHost
        const stream = yield* Effect.fork(post(`${host.url}/q`, { message: "wait", session_id: "order", stream: true }))
        yield* Deferred.await(entered)
        const second = yield* Effect.fork(post(`${host.url}/q`, { message: "b", session_id: "order" }))
        yield* Effect.sleep("50 millis")
        openGate()
        const streamed = yield* Fiber.join(stream)
        const data = streamed.body.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6))
        assert.deepStrictEqual(data, ["wa", "it@0", "[DONE]"])
        // The second turn ran after the stream's turn had recorded its input and reply.
        assert.strictEqual(JSON.parse((yield* Fiber.join(second)).body).response, "b@2")
      }))
  })
})
