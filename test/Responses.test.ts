import { LanguageModel } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream } from "effect"
import OpenAI from "openai"
import * as Responses from "../src/channels/Responses/index.js"
import { AgentHost } from "../src/core/AgentHost.js"
import { assertItem, assertResponseResource, assertStreamEvent } from "./utils/OpenResponsesSchema.js"
import * as ResponsesAgent from "./utils/ResponsesAgent.js"
import * as TestHost from "./utils/TestHost.js"

type Event = { readonly type: string; readonly sequence_number: number } & Record<string, unknown>

const clientFor = (url: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 })

const outputTextOf = (response: { readonly output: ReadonlyArray<unknown> }) =>
  response.output.flatMap((item) => {
    const i = item as { type: string; content?: ReadonlyArray<{ type: string; text?: string }> }
    return i.type === "message" ? (i.content ?? []).map((c) => c.text ?? "") : []
  }).join("")

/** Checks the invariants every event stream must hold and returns the events. */
const checkEvents = (events: ReadonlyArray<Event>) => {
  for (const event of events) assertStreamEvent(event)
  for (let i = 1; i < events.length; i++) {
    assert.isTrue(events[i]!.sequence_number > events[i - 1]!.sequence_number, "sequence numbers increase")
  }
  return events
}

const collect = <A>(iterable: AsyncIterable<A>) =>
  Effect.promise(async () => {
    const out: Array<A> = []
    for await (const item of iterable) out.push(item)
    return out
  })

const until = <A>(poll: () => Promise<A>, done: (a: A) => boolean) =>
  Effect.promise(async () => {
    for (let i = 0; i < 500; i++) {
      const value = await poll()
      if (done(value)) return value
      await new Promise((r) => setTimeout(r, 10))
    }
    throw new Error("condition not reached")
  })

describe("Responses", () => {
  layer(TestHost.layer({ channels: [Responses.make()], target: ResponsesAgent.layer }))((it) => {
    it.effect("create returns a spec-valid completed response", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const response = yield* Effect.promise(() =>
          client.responses.create({ model: "my-model", input: "hello there", instructions: "be brief" })
        )
        assertResponseResource(response)
        assert.strictEqual(response.status, "completed")
        assert.strictEqual(response.object, "response")
        assert.strictEqual(response.model, "my-model")
        assert.strictEqual(response.instructions, "be brief")
        assert.isTrue(Number.isInteger(response.created_at))
        assert.include(response.output_text, "hello there")
        assert.include(response.output_text, "turn 1")
        assert.isAbove(response.usage?.total_tokens ?? 0, 0)
        for (const item of response.output) assertItem(item)
      }))

    it.effect("responses.stream emits the full event sequence and a final response", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const stream = client.responses.stream({ input: "stream this please" })
        const events = checkEvents((yield* collect(stream)) as unknown as ReadonlyArray<Event>)
        const final = yield* Effect.promise(() => stream.finalResponse())
        assertResponseResource(final)
        const types = events.map((e) => e.type)
        assert.deepStrictEqual(types.slice(0, 4), [
          "response.created",
          "response.in_progress",
          "response.output_item.added",
          "response.content_part.added"
        ])
        assert.deepStrictEqual(types.slice(-4), [
          "response.output_text.done",
          "response.content_part.done",
          "response.output_item.done",
          "response.completed"
        ])
        const deltas = events.filter((e) => e.type === "response.output_text.delta").map((e) => e["delta"] as string)
        assert.isAbove(deltas.length, 3)
        const done = events.find((e) => e.type === "response.output_text.done")!
        assert.strictEqual(deltas.join(""), done["text"])
        assert.strictEqual(outputTextOf(final), deltas.join(""))
        assert.include(outputTextOf(final), "stream this please")
        assert.strictEqual(final.status, "completed")
      }))

    it.effect("the raw SSE stream has the right headers and framing", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const res = yield* Effect.promise(() =>
          fetch(`${host.url}/v1/responses`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ input: "raw", stream: true })
          })
        )
        assert.strictEqual(res.status, 200)
        assert.include(res.headers.get("content-type") ?? "", "text/event-stream")
        assert.strictEqual(res.headers.get("cache-control"), "no-cache")
        const body = yield* Effect.promise(() => res.text())
        const frames = body.split("\n\n").filter((f) => f.length > 0)
        for (const frame of frames) {
          const [eventLine, dataLine] = frame.split("\n")
          const data = JSON.parse(dataLine!.slice(6)) as Event
          assert.strictEqual(eventLine, `event: ${data.type}`)
          assertStreamEvent(data)
        }
        assert.include(frames[frames.length - 1]!, "response.completed")
      }))

    it.effect("retrieve, input items and delete", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const created = yield* Effect.promise(() =>
          client.responses.create({
            input: [
              { role: "developer", content: "be nice" },
              {
                role: "user",
                content: [{ type: "input_text", text: "look at" }, {
                  type: "input_image",
                  image_url: "data:image/png;base64,iVBORw0KGgo=",
                  detail: "auto"
                }]
              },
              { type: "message", role: "assistant", content: "earlier answer" },
              { role: "user", content: "and this" }
            ]
          })
        )
        const fetched = yield* Effect.promise(() => client.responses.retrieve(created.id))
        assertResponseResource(fetched)
        assert.strictEqual(fetched.id, created.id)
        assert.strictEqual(outputTextOf(fetched), created.output_text)

        const all = yield* Effect.promise(() => client.responses.inputItems.list(created.id, { order: "asc" }))
        assert.strictEqual(all.data.length, 4)
        for (const item of all.data) assertItem(item)
        assert.strictEqual((all.data[0] as { role: string }).role, "developer")

        // Pagination: two pages of two, newest first by default.
        const page = yield* Effect.promise(() => client.responses.inputItems.list(created.id, { limit: 2 }))
        assert.strictEqual(page.data.length, 2)
        assert.isTrue(page.has_more)
        assert.strictEqual(page.data[0]!.id, all.data[3]!.id)
        const next = yield* Effect.promise(() => page.getNextPage())
        assert.deepStrictEqual(next.data.map((i) => i.id), [all.data[1]!.id, all.data[0]!.id])
        assert.isFalse(next.has_more)
        const raw = yield* Effect.promise(() =>
          fetch(`${host.url}/v1/responses/${created.id}/input_items?limit=1&order=asc`).then((r) => r.json())
        )
        assert.deepInclude(raw, { object: "list", first_id: all.data[0]!.id, last_id: all.data[0]!.id, has_more: true })

        const deleted = yield* Effect.promise(() => client.responses.delete(created.id))
        assert.deepStrictEqual(deleted as unknown, { id: created.id, object: "response", deleted: true })
        const gone = yield* Effect.promise(() => client.responses.retrieve(created.id).then(() => null, (e) => e))
        assert.instanceOf(gone, OpenAI.NotFoundError)
      }))

    it.effect("previous_response_id keeps the conversation", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const first = yield* Effect.promise(() => client.responses.create({ input: "one" }))
        assert.include(first.output_text, "turn 1")
        const second = yield* Effect.promise(() =>
          client.responses.create({ input: "two", previous_response_id: first.id })
        )
        assert.include(second.output_text, "turn 2")
        assert.strictEqual(second.previous_response_id, first.id)
        const third = yield* Effect.promise(() =>
          client.responses.create({ input: "three", previous_response_id: second.id, stream: true })
        )
        const events = checkEvents((yield* collect(third)) as unknown as ReadonlyArray<Event>)
        const completed = events[events.length - 1]!["response"] as { output: ReadonlyArray<unknown> }
        assert.include(outputTextOf(completed), "turn 3")
        // A fresh request starts a fresh conversation; a conversation (test/Conversations.test.ts) keeps one.
        const fresh = yield* Effect.promise(() => client.responses.create({ input: "again" }))
        assert.include(fresh.output_text, "turn 1")
        const conversation = yield* Effect.promise(() => client.conversations.create())
        const c1 = yield* Effect.promise(() => client.responses.create({ input: "a", conversation: conversation.id }))
        const c2 = yield* Effect.promise(() =>
          client.responses.create({ input: "b", conversation: { id: conversation.id } })
        )
        assert.include(c1.output_text, "turn 1")
        assert.include(c2.output_text, "turn 2")
      }))

    it.effect("a client tool call round trip", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const tools: Array<OpenAI.Responses.FunctionTool> = [{
          type: "function",
          name: "get_weather",
          description: "Weather for a city",
          parameters: { type: "object", properties: { city: { type: "string" } } },
          strict: false
        }]
        const first = yield* Effect.promise(() =>
          client.responses.create({ input: "please call get_weather for Paris", tools })
        )
        assertResponseResource(first)
        assert.strictEqual(first.tools[0]!.type, "function")
        const call = first.output.find((i) => i.type === "function_call")
        assert.isDefined(call)
        if (call?.type !== "function_call") return
        assert.strictEqual(call.name, "get_weather")
        assert.strictEqual(JSON.parse(call.arguments).city, "Paris")
        const second = yield* Effect.promise(() =>
          client.responses.create({
            previous_response_id: first.id,
            input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny, 21C" }],
            tools
          })
        )
        assert.include(second.output_text, "sunny, 21C")
        assert.include(second.output_text, call.call_id)

        // Streaming: the call arrives as an item with argument events.
        const stream = client.responses.stream({ input: "now call get_weather again", tools })
        const events = checkEvents((yield* collect(stream)) as unknown as ReadonlyArray<Event>)
        const types = events.map((e) => e.type)
        assert.include(types, "response.function_call_arguments.delta")
        assert.include(types, "response.function_call_arguments.done")
        const final = yield* Effect.promise(() => stream.finalResponse())
        assert.strictEqual(final.output[0]!.type, "function_call")
      }))

    it.effect("reasoning streams as summary events and renders as a reasoning item", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const stream = client.responses.stream({ input: "think about it" })
        const events = checkEvents((yield* collect(stream)) as unknown as ReadonlyArray<Event>)
        assert.include(events.map((e) => e.type), "response.reasoning_summary_text.delta")
        const final = yield* Effect.promise(() => stream.finalResponse())
        assertResponseResource(final)
        assert.strictEqual(final.output[0]!.type, "reasoning")
        assert.strictEqual(outputTextOf(final), "Thought done.")
        const blocking = yield* Effect.promise(() => client.responses.create({ input: "think again" }))
        assertResponseResource(blocking)
        assert.deepStrictEqual(blocking.output.map((i) => i.type), ["reasoning", "message"])
      }))

    it.effect("agent failure: response.failed in a stream, 500 envelope otherwise", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const stream = client.responses.stream({ input: "explode now" })
        const events = checkEvents((yield* collect(stream)) as unknown as ReadonlyArray<Event>)
        const last = events[events.length - 1]!
        assert.strictEqual(last.type, "response.failed")
        const failed = last["response"] as { status: string; error: { code: string; message: string } }
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.error.message, "the agent exploded")
        const error = yield* Effect.promise(() =>
          client.responses.create({ input: "explode" }).then(() => null, (e) => e)
        )
        assert.instanceOf(error, OpenAI.InternalServerError)
        assert.strictEqual((error as InstanceType<typeof OpenAI.APIError>).code, "server_error")
        const ok = yield* Effect.promise(() => client.responses.create({ input: "still fine" }))
        assert.strictEqual(ok.status, "completed")
      }))

    it.effect("background: poll, then replay the stored stream exactly", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const live = yield* Effect.promise(() =>
          client.responses.create({ input: "background stream", background: true, stream: true })
        )
        const liveEvents = checkEvents((yield* collect(live)) as unknown as ReadonlyArray<Event>)
        assert.strictEqual(liveEvents[0]!.type, "response.created")
        assert.strictEqual((liveEvents[0]!["response"] as { status: string }).status, "queued")
        const id = (liveEvents[0]!["response"] as { id: string }).id
        const replay = yield* Effect.promise(() => client.responses.retrieve(id, { stream: true }))
        const replayed = checkEvents((yield* collect(replay)) as unknown as ReadonlyArray<Event>)
        assert.deepStrictEqual(replayed, liveEvents)
        const tail = yield* Effect.promise(() => client.responses.retrieve(id, { stream: true, starting_after: 3 }))
        const tailEvents = (yield* collect(tail)) as unknown as ReadonlyArray<Event>
        assert.deepStrictEqual(tailEvents, liveEvents.filter((e) => e.sequence_number > 3))

        const queued = yield* Effect.promise(() => client.responses.create({ input: "poll me", background: true }))
        assertResponseResource(queued)
        assert.strictEqual(queued.status, "queued")
        assert.isTrue(queued.background)
        const done = yield* until(() => client.responses.retrieve(queued.id), (r) => r.status === "completed")
        assertResponseResource(done)
        assert.include(outputTextOf(done), "poll me")
      }))

    it.effect("background: a resumed stream follows the live run; cancel stops one", () =>
      Effect.gen(function*() {
        ResponsesAgent.resetGate()
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const queued = yield* Effect.promise(() => client.responses.create({ input: "wait for it", background: true }))
        const resumed = yield* Effect.promise(() => client.responses.retrieve(queued.id, { stream: true }))
        const events = yield* Effect.promise(async () => {
          const out: Array<Event> = []
          for await (const event of resumed) {
            out.push(event as unknown as Event)
            if (event.type === "response.output_text.delta") ResponsesAgent.openGate()
          }
          return out
        })
        checkEvents(events)
        assert.strictEqual(events[events.length - 1]!.type, "response.completed")
        const final = yield* Effect.promise(() => client.responses.retrieve(queued.id))
        assert.strictEqual(outputTextOf(final), "first second")

        ResponsesAgent.resetGate()
        const slow = yield* Effect.promise(() => client.responses.create({ input: "wait forever", background: true }))
        const cancelled = yield* Effect.promise(() => client.responses.cancel(slow.id))
        assertResponseResource(cancelled)
        assert.strictEqual(cancelled.status, "cancelled")
        const stored = yield* Effect.promise(() => client.responses.retrieve(slow.id))
        assert.strictEqual(stored.status, "cancelled")
        ResponsesAgent.openGate()
      }))

    it.effect("a client that disconnects mid-stream loses nothing", () =>
      Effect.gen(function*() {
        ResponsesAgent.resetGate()
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const controller = new AbortController()
        const stream = yield* Effect.promise(() =>
          client.responses.create({ input: "wait and disconnect", stream: true }, { signal: controller.signal })
        )
        const id = yield* Effect.promise(async () => {
          for await (const event of stream) {
            if (event.type === "response.created") {
              controller.abort()
              return event.response.id
            }
          }
          throw new Error("no response.created")
        })
        ResponsesAgent.openGate()
        const done = yield* until(
          () => client.responses.retrieve(id).then((r) => r, () => null),
          (r) => r !== null && r.status === "completed"
        )
        assert.strictEqual(outputTextOf(done!), "first second")
      }))

    it.effect("store: false keeps nothing", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const client = clientFor(host.url)
        const response = yield* Effect.promise(() => client.responses.create({ input: "forget me", store: false }))
        assert.isFalse((response as unknown as { store: boolean }).store)
        const error = yield* Effect.promise(() => client.responses.retrieve(response.id).then(() => null, (e) => e))
        assert.instanceOf(error, OpenAI.NotFoundError)
      }))

    it.effect("@effect/ai-openai generateText and streamText", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const model = OpenAiLanguageModel.layer({ model: "agent" }).pipe(
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
        assert.isTrue(Chunk.toReadonlyArray(parts).some((p) => p.type === "finish"))
      }))
  })
})
