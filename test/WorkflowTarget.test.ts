import { FetchHttpClient } from "@effect/platform"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Activity } from "@effect/workflow"
import { Context, Effect, Layer, Option, Schema, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as CollectAnswers from "../examples/workflow/CollectAnswers.js"
import * as Invocations from "../src/channels/Invocations.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Channel from "../src/core/Channel.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import type { IsolationKey } from "../src/domain/Ids.js"
import { responseText, userMessage } from "../src/domain/Message.js"
import { json, readJson } from "../src/http/HttpBody.js"
import * as WorkflowOutput from "../src/workflow/WorkflowOutput.js"
import * as WorkflowTarget from "../src/workflow/WorkflowTarget.js"
import type { FakeSideEffects } from "./utils/FakeSideEffects.js"
import * as Fake from "./utils/FakeSideEffects.js"
import * as TestHost from "./utils/TestHost.js"

class Upstream extends Context.Tag("test/Upstream")<Upstream, FakeSideEffects>() {}
const layerUpstream = Layer.scoped(Upstream, Fake.make())

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

interface SseEvent {
  readonly event: string
  readonly data: string
}

const sseEvents = (body: string): ReadonlyArray<SseEvent> =>
  body.split("\n\n").filter((block) => block.trim().length > 0).map((block) => {
    let event = "message"
    const data: Array<string> = []
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7)
      else if (line.startsWith("data: ")) data.push(line.slice(6))
    }
    return { event, data: data.join("\n") }
  })

/** A test channel that answers with the hosted result itself: `result`, `value`, text and streamed updates. */
const probe = Channel.make("probe", (ctx) =>
  Effect.succeed({
    path: "/probe",
    routes: [{
      method: "POST" as const,
      path: "/",
      handler: ({ request }) =>
        Effect.gen(function*() {
          const body = (yield* Effect.orDie(readJson(request, 1 << 20))) as {
            message: string
            session_id: string
            stream?: boolean
          }
          const turn: ChannelRequest = {
            channel: "probe",
            operation: "invoke",
            input: [userMessage(body.message)],
            session: { isolationKey: `probe:${body.session_id}` as IsolationKey },
            stream: body.stream === true
          }
          if (!turn.stream) {
            const { result } = yield* ctx.run(turn)
            return json({ result: result.result, value: result.response.value, text: responseText(result.response) })
          }
          const started = yield* ctx.runStream(turn)
          const updates = yield* Stream.runCollect(started.updates)
          const { result } = yield* started.result
          return json({
            updates: [...updates],
            result: result.result,
            value: result.response.value,
            text: responseText(result.response)
          })
        }).pipe(Effect.catchAll((error) => Effect.succeed(json({ error: error._tag, message: error.message }, 500))))
    }]
  }))

const collectTarget = Layer.unwrapEffect(
  Effect.map(Upstream, (upstream) => CollectAnswers.layerWith(Option.some(upstream.url)))
).pipe(Layer.provide(FetchHttpClient.layer))

const answers = ["Arthur", "the grail", "blue"]

describe("WorkflowTarget (memory engine)", () => {
  layer(
    TestHost.layer({
      channels: [Invocations.make(), probe],
      target: collectTarget.pipe(Layer.provide(WorkflowTarget.layerEngineMemory))
    }).pipe(Layer.provideMerge(layerUpstream)),
    { excludeTestServices: true }
  )((it) => {
    it.effect("blocking: one execution over four turns, outputs in order, activities once", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const upstream = yield* Upstream
        const say = (message: string) =>
          Effect.map(
            post(`${host.url}/invocations`, { message, session_id: "blocking" }),
            (r) => {
              assert.strictEqual(r.status, 200, r.body)
              return JSON.parse(r.body).response as string
            }
          )
        const first = yield* say("start")
        assert.include(first, "Let's collect three answers")
        assert.isTrue(first.indexOf("collect") < first.indexOf("Question 1"))
        assert.include(yield* say(answers[0]!), "Question 2: What is your quest?")
        assert.include(yield* say(answers[1]!), "Question 3")
        const last = yield* say(answers[2]!)
        assert.include(last, "Remote summary of 3 answers: Arthur, the grail, blue")
        for (const step of [1, 2, 3]) assert.strictEqual(upstream.count(`/record/${step}`), 1)
        assert.strictEqual(upstream.count("/summarize"), 1)
        // The session's next message starts a new execution.
        assert.include(yield* say("once more"), "Question 1")
      }))

    it.effect("streaming: the same turns over SSE, outputs in order, ending with [DONE]", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const stream = (message: string) =>
          Effect.map(post(`${host.url}/invocations`, { message, session_id: "streaming", stream: true }), (r) => {
            assert.strictEqual(r.status, 200)
            const events = sseEvents(r.body)
            assert.strictEqual(events[events.length - 1]?.data, "[DONE]")
            assert.isFalse(events.some((e) => e.event === "error"), r.body)
            return events.slice(0, -1).map((e) => e.data).join("")
          })
        const first = yield* stream("go")
        assert.isTrue(first.indexOf("collect three answers") < first.indexOf("Question 1"), first)
        assert.include(yield* stream("a"), "Question 2")
        assert.include(yield* stream("b"), "Question 3")
        assert.include(yield* stream("c"), "Remote summary of 3 answers: a, b, c")
      }))

    it.effect("structured outputs and the workflow's result reach the hosted result, blocking and streaming", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const turn = (session: string, message: string, stream: boolean) =>
          Effect.map(post(`${host.url}/probe`, { message, session_id: session, stream }), (r) => {
            assert.strictEqual(r.status, 200, r.body)
            return JSON.parse(r.body)
          })
        for (const stream of [false, true]) {
          const session = stream ? "structured-stream" : "structured-block"
          const first = yield* turn(session, "start", stream)
          if (!stream) {
            // Blocking: a turn that ends waiting for the user says so in its result.
            assert.strictEqual(first.result._tag, "AwaitingInput")
            assert.strictEqual(first.result.input, "WorkflowInput/0")
          }
          assert.include(first.text, "Question 1")
          const second = yield* turn(session, "Lancelot", stream)
          assert.deepStrictEqual(second.value, { question: 1, answer: "Lancelot" })
          assert.include(second.text, "Question 2")
          if (stream) {
            const kinds = (second.updates as Array<{ value?: unknown; contents: Array<{ text?: string }> }>).map((u) =>
              u.value !== undefined ? "value" : "text"
            )
            assert.deepStrictEqual(kinds, ["value", "text"])
          }
          yield* turn(session, "to seek", stream)
          const last = yield* turn(session, "green", stream)
          const expected = {
            answers: ["Lancelot", "to seek", "green"],
            summary: "Remote summary of 3 answers: Lancelot, to seek, green"
          }
          // Blocking: TargetResult.result is the workflow's own result. Streaming: the fold of the updates, whose
          // last value is that result.
          if (!stream) assert.deepStrictEqual(last.result, expected)
          assert.deepStrictEqual(last.value, expected)
        }
      }))
  })
})

class Refused extends Schema.TaggedError<Refused>()("Refused", { message: Schema.String }) {}
const Failing = WorkflowTarget.makeWorkflow({ name: "Failing", error: Refused })
const failingTarget = WorkflowTarget.layer(Failing, (payload) =>
  Effect.gen(function*() {
    yield* WorkflowOutput.text("working on it")
    if (payload.text === "die") return yield* Effect.die(new Error("the workflow crashed"))
    return yield* new Refused({ message: "the upstream said no" })
  }))

describe("WorkflowTarget failures", () => {
  layer(
    TestHost.layer({
      channels: [Invocations.make()],
      target: failingTarget.pipe(Layer.provide(WorkflowTarget.layerEngineMemory))
    }),
    { excludeTestServices: true }
  )((it) => {
    it.effect("a failed or crashed workflow reaches the channel as an error, blocking and streaming", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const blocking = yield* post(`${host.url}/invocations`, { message: "go", session_id: "f1" })
        assert.strictEqual(blocking.status, 500)
        assert.strictEqual(JSON.parse(blocking.body).error.type, "agent_error")
        assert.include(JSON.parse(blocking.body).error.message, "the workflow failed: the upstream said no")
        const died = yield* post(`${host.url}/invocations`, { message: "die", session_id: "f2" })
        assert.strictEqual(died.status, 500)
        assert.include(JSON.parse(died.body).error.message, "the workflow crashed")
        const streamed = yield* post(`${host.url}/invocations`, { message: "go", session_id: "f3", stream: true })
        const events = sseEvents(streamed.body)
        assert.strictEqual(events[0]?.data, "working on it")
        assert.strictEqual(events[events.length - 1]?.event, "error")
        assert.include(events[events.length - 1]?.data, "the upstream said no")
      }))
  })
})

// Effect-TS/effect#6014: `Effect.all` of activities with concurrency > 1 can deadlock when the execution is
// replayed. The pattern we document: activities one after another (or child workflows). This pins that the
// sequential pattern replays after a suspension without running any completed activity again.
const Steps = WorkflowTarget.makeWorkflow({ name: "Steps", success: Schema.Array(Schema.String) })
const executions = new Map<string, number>()
const step = (name: string) =>
  Activity.make({
    name,
    success: Schema.String,
    execute: Effect.sync(() => {
      executions.set(name, (executions.get(name) ?? 0) + 1)
      return name.toUpperCase()
    })
  })
const stepsTarget = WorkflowTarget.layer(Steps, () =>
  Effect.gen(function*() {
    const before = yield* Effect.forEach(["a", "b", "c"], step) // sequential: the safe pattern
    const input = yield* WorkflowOutput.awaitInput("continue?")
    const after = yield* Effect.forEach(["d", "e"], step)
    yield* WorkflowOutput.text(`done after ${input.text}`)
    return [...before, ...after]
  }))

const sqlEngine = (dir: string) =>
  WorkflowTarget.layerEngineSql().pipe(Layer.provide(SqliteClient.layer({ filename: Path.join(dir, "state.db") })))

describe("WorkflowTarget: the #6014 safe pattern", () => {
  for (const [engine, make] of [["memory", () => WorkflowTarget.layerEngineMemory], ["sqlite", sqlEngine]] as const) {
    it.live(`sequential activities replay without re-running (${engine} engine)`, () =>
      Effect.gen(function*() {
        executions.clear()
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "wf-steps-"))
        const host = TestHost.layer({ channels: [probe], target: stepsTarget.pipe(Layer.provide(make(dir))) })
        yield* Effect.gen(function*() {
          const { url } = yield* AgentHost
          const first = yield* post(`${url}/probe`, { message: "go", session_id: "steps" })
          assert.include(JSON.parse(first.body).text, "continue?")
          const second = yield* post(`${url}/probe`, { message: "yes", session_id: "steps" })
          const body = JSON.parse(second.body)
          assert.deepStrictEqual(body.result, ["A", "B", "C", "D", "E"])
          assert.include(body.text, "done after yes")
          assert.deepStrictEqual(Object.fromEntries(executions), { a: 1, b: 1, c: 1, d: 1, e: 1 })
        }).pipe(Effect.provide(host), Effect.timeout("30 seconds"))
      }))
  }
})

describe("WorkflowTarget (sqlite engine, in process)", () => {
  it.live("a suspended execution survives a host restart and resumes with the next message", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "wf-restart-"))
      const host = TestHost.layer({
        channels: [Invocations.make()],
        target: CollectAnswers.layerWith(Option.none()).pipe(
          Layer.provide(sqlEngine(dir)),
          Layer.provide(FetchHttpClient.layer)
        )
      })
      const say = (message: string) =>
        Effect.flatMap(
          AgentHost,
          (h) =>
            Effect.map(post(`${h.url}/invocations`, { message, session_id: "durable" }), (r) => {
              assert.strictEqual(r.status, 200, r.body)
              return JSON.parse(r.body).response as string
            })
        )
      yield* Effect.provide(Effect.zipRight(say("start"), say("Robin")), host)
      // A new host on the same database: the execution waits for answer two.
      const reply = yield* Effect.provide(say("to run away"), host)
      assert.include(reply, "Question 3")
      const done = yield* Effect.provide(say("yellow"), host)
      assert.include(done, "Summary: 1. Robin; 2. to run away; 3. yellow")
    }).pipe(Effect.timeout("60 seconds")))
})
