/**
 * Issue 13 point 13: a session's mailbox is bounded (429 + retry-after when full) and a caller chooses what its
 * disconnect does to its turn (`on_disconnect`: `continue` runs it anyway, `cancel` drops or interrupts it).
 * Real HTTP on 127.0.0.1 against a target whose turns wait on gates the test opens: what ran is asserted, never
 * how long anything took.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Context, Deferred, Effect, FiberId, Layer } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import { Sessions } from "../src/core/Sessions.js"
import { assistantMessage } from "../src/domain/Message.js"
import { StateStore } from "../src/state/StateStore.js"
import * as StateStoreModule from "../src/state/StateStore.js"
import * as TestHost from "./utils/TestHost.js"

/** What the fake target did, and the gates its `hold:*` turns wait on. */
class Control extends Context.Tag("test/SessionQueue/Control")<Control, {
  readonly started: Array<string>
  readonly ran: Array<string>
  readonly interrupted: Array<string>
  readonly gate: (name: string) => Deferred.Deferred<void>
}>() {}

const controlLayer = Layer.sync(Control, () => {
  const gates = new Map<string, Deferred.Deferred<void>>()
  return {
    started: [],
    ran: [],
    interrupted: [],
    gate: (name) => {
      let gate = gates.get(name)
      if (gate === undefined) {
        gate = Deferred.unsafeMake<void>(FiberId.none)
        gates.set(name, gate)
      }
      return gate
    }
  }
})

const targetLayer = Agent.layerEffect(Effect.map(Control, (control) =>
  Agent.make({
    name: "gated",
    run: (turn) => {
      const last = turn.input[turn.input.length - 1]
      const text = last?.contents.map((c) => c._tag === "text" ? c.text : "").join("") ?? ""
      return Effect.gen(function*() {
        control.started.push(text)
        if (text.startsWith("hold:")) yield* Deferred.await(control.gate(text))
        control.ran.push(text)
        return { messages: [assistantMessage(`ran ${text}`)] }
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => control.interrupted.push(text))))
    }
  })))

// One store instance (layers are memoised by reference), so the test can read the history the host wrote.
const storeLayer = StateStoreModule.layerMemory

const hostLayer = TestHost.layer({
  channels: [Invocations.make(), Responses.make()],
  target: targetLayer,
  store: storeLayer
}).pipe(Layer.provideMerge(controlLayer), Layer.provideMerge(storeLayer))

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json", ...headers },
      ...(signal === undefined ? {} : { signal })
    }).then(
      async (r): Promise<Answer | "aborted"> => ({ status: r.status, headers: r.headers, body: await r.text() }),
      () => "aborted" as const
    )
  )

/** Waits (bounded) until the condition holds on the host's live state. */
const eventually = <R>(what: string, condition: Effect.Effect<boolean, never, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 400; i++) {
      if (yield* condition) return
      yield* Effect.sleep("10 millis")
    }
    assert.fail(`timed out waiting until ${what}`)
  })

const queuedIs = (n: number) => Effect.map(Effect.flatMap(Sessions, (s) => s.stats), (s) => s.queued === n)

describe("session mailbox and on_disconnect", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("a full mailbox answers 429 at once with retry-after and the error envelope", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const url = `${host.url}/invocations`
        const first = yield* Effect.fork(post(url, { message: "hold:full", session_id: "full" }))
        yield* eventually("the first turn runs", Effect.sync(() => control.started.includes("hold:full")))
        // The default limit: 16 turns may wait behind the running one.
        const waiting = yield* Effect.forEach(
          Array.from({ length: 16 }, (_, i) => i),
          (i) => Effect.fork(post(url, { message: `wait ${i}`, session_id: "full" }))
        )
        yield* eventually("16 turns are queued", queuedIs(16))
        const extra = yield* post(url, { message: "one too many", session_id: "full" })
        assert.notStrictEqual(extra, "aborted")
        if (extra === "aborted") return
        assert.strictEqual(extra.status, 429)
        assert.strictEqual(extra.headers.get("retry-after"), "1")
        const error = JSON.parse(extra.body).error
        assert.strictEqual(error.type, "MailboxFull")
        assert.include(error.message, "limit is 16")
        // Nothing accepted is lost: the gate opens and every queued turn runs.
        yield* Deferred.succeed(control.gate("hold:full"), void 0)
        const answers = yield* Effect.forEach([first, ...waiting], (fiber) => fiber.await)
        for (const exit of answers) {
          assert.strictEqual(exit._tag, "Success")
          if (exit._tag === "Success" && exit.value !== "aborted") assert.strictEqual(exit.value.status, 200)
        }
        assert.deepStrictEqual(
          control.ran.filter((t) => t.startsWith("wait ")).sort(),
          Array.from({ length: 16 }, (_, i) => `wait ${i}`).sort()
        )
        assert.notInclude(control.started, "one too many")
      }))

    it.effect("Responses: a full mailbox is a 429 rate_limit_error with retry-after", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const url = `${host.url}/v1/responses`
        // A background response, then continuations of it: all in its session.
        const first = yield* Effect.fork(post(url, { input: "hold:full-r", background: true }))
        yield* eventually("the first turn runs", Effect.sync(() => control.started.includes("hold:full-r")))
        const started = yield* first.await
        const previous = started._tag === "Success" && started.value !== "aborted" ?
          (JSON.parse(started.value.body) as { id: string }).id :
          assert.fail("the background response was not created")
        const waiting = yield* Effect.forEach(
          Array.from({ length: 16 }, (_, i) => i),
          (i) => Effect.fork(post(url, { input: `r-wait ${i}`, previous_response_id: previous }))
        )
        yield* eventually("16 turns are queued", queuedIs(16))
        const extra = yield* post(url, { input: "too many", previous_response_id: previous })
        assert.notStrictEqual(extra, "aborted")
        if (extra === "aborted") return
        assert.strictEqual(extra.status, 429)
        assert.strictEqual(extra.headers.get("retry-after"), "1")
        const error = JSON.parse(extra.body).error
        assert.strictEqual(error.type, "rate_limit_error")
        assert.strictEqual(error.code, "session_queue_full")
        yield* Deferred.succeed(control.gate("hold:full-r"), void 0)
        yield* Effect.forEach(waiting, (fiber) => fiber.await)
        assert.include(control.ran, "hold:full-r")
        assert.strictEqual(control.ran.filter((t) => t.startsWith("r-wait ")).length, 16)
      }))

    it.effect("cancel: 15 aborted queued requests are dropped and free the session", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const url = `${host.url}/invocations`
        const first = yield* Effect.fork(post(url, { message: "hold:c1", session_id: "cancel" }))
        yield* eventually("the first turn runs", Effect.sync(() => control.started.includes("hold:c1")))
        const aborts = Array.from({ length: 15 }, () => new AbortController())
        const abandoned = yield* Effect.forEach(aborts, (abort, i) =>
          Effect.fork(
            post(url, { message: `gone ${i}`, session_id: "cancel", on_disconnect: "cancel" }, {}, abort.signal)
          ))
        yield* eventually("15 turns are queued", queuedIs(15))
        for (const abort of aborts) abort.abort()
        yield* Effect.forEach(abandoned, (fiber) => fiber.await)
        // The aborted turns leave the mailbox without running: nothing waits behind the running turn.
        yield* eventually("the aborted turns are dropped", queuedIs(0))
        yield* Deferred.succeed(control.gate("hold:c1"), void 0)
        const next = yield* post(url, { message: "after the aborts", session_id: "cancel" })
        assert.notStrictEqual(next, "aborted")
        if (next !== "aborted") assert.strictEqual(next.status, 200)
        yield* first.await
        const ran = control.ran.filter((t) => t === "hold:c1" || t === "after the aborts" || t.startsWith("gone "))
        assert.deepStrictEqual(ran, ["hold:c1", "after the aborts"])
        assert.isFalse(control.started.some((t) => t.startsWith("gone ")))
      }))

    it.effect("cancel: a running turn whose caller goes away is interrupted", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const url = `${host.url}/invocations`
        const abort = new AbortController()
        const running = yield* Effect.fork(
          post(
            url,
            { message: "hold:c2", session_id: "cancel-running" },
            { "x-agent-on-disconnect": "cancel" },
            abort.signal
          )
        )
        yield* eventually("the turn runs", Effect.sync(() => control.started.includes("hold:c2")))
        abort.abort()
        yield* running.await
        yield* eventually("the turn is interrupted", Effect.sync(() => control.interrupted.includes("hold:c2")))
        // The gate never opens, yet the session serves the next turn.
        const next = yield* post(url, { message: "next after interrupt", session_id: "cancel-running" })
        assert.notStrictEqual(next, "aborted")
        if (next !== "aborted") assert.strictEqual(next.status, 200)
        assert.notInclude(control.ran, "hold:c2")
      }))

    it.effect("cancel on a Responses stream: the abandoned queued turn is dropped", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const url = `${host.url}/v1/responses`
        const first = yield* Effect.fork(post(url, { input: "hold:c3", background: true }))
        yield* eventually("the first turn runs", Effect.sync(() => control.started.includes("hold:c3")))
        const started = yield* first.await
        const previous = started._tag === "Success" && started.value !== "aborted" ?
          (JSON.parse(started.value.body) as { id: string }).id :
          assert.fail("the background response was not created")
        const abort = new AbortController()
        const streamed = yield* Effect.fork(Effect.promise(() =>
          fetch(url, {
            method: "POST",
            body: JSON.stringify({ input: "gone stream", previous_response_id: previous, stream: true }),
            headers: { "content-type": "application/json", "x-agent-on-disconnect": "cancel" },
            signal: abort.signal
          }).then((r) => r.body?.getReader().read()).catch(() => undefined)
        ))
        yield* eventually("the streamed turn is queued", queuedIs(1))
        yield* streamed.await
        abort.abort()
        yield* eventually("the abandoned turn is dropped", queuedIs(0))
        yield* Deferred.succeed(control.gate("hold:c3"), void 0)
        yield* eventually("the background turn ends", Effect.sync(() => control.ran.includes("hold:c3")))
        assert.notInclude(control.started, "gone stream")
      }))

    it.effect("continue (the default): aborted requests still run and are recorded", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const control = yield* Control
        const store = yield* StateStore
        const url = `${host.url}/invocations`
        const first = yield* Effect.fork(post(url, { message: "hold:k1", session_id: "keep" }))
        yield* eventually("the first turn runs", Effect.sync(() => control.started.includes("hold:k1")))
        const aborts = Array.from({ length: 15 }, () => new AbortController())
        const abandoned = yield* Effect.forEach(aborts, (abort, i) =>
          Effect.fork(post(url, { message: `kept ${i}`, session_id: "keep" }, {}, abort.signal)))
        yield* eventually("15 turns are queued", queuedIs(15))
        for (const abort of aborts) {
          abort.abort()
        }
        yield* Effect.forEach(abandoned, (fiber) =>
          fiber.await)
        yield* Deferred.succeed(control.gate("hold:k1"), void 0)
        yield* first.await
        const next = yield* post(url, { message: "after kept", session_id: "keep" })
        assert.notStrictEqual(next, "aborted")
        assert.deepStrictEqual(
          control.ran.filter((t) => t.startsWith("kept ")).sort(),
          Array.from({ length: 15 }, (_, i) => `kept ${i}`).sort()
        )
        const history = yield* store.loadHistory("invocations:keep", 1000)
        // hold + 15 kept + next, each a user message and a reply.
        assert.strictEqual(history.length, 2 * 17)
      }))

    it.effect("a bad on_disconnect value is a 4xx with the envelope", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const bad = yield* post(`${host.url}/invocations`, { message: "x", on_disconnect: "later" })
        assert.notStrictEqual(bad, "aborted")
        if (bad !== "aborted") {
          assert.strictEqual(bad.status, 422)
          assert.include(JSON.parse(bad.body).error.message, "on_disconnect")
        }
        const header = yield* post(`${host.url}/v1/responses`, { input: "x" }, { "x-agent-on-disconnect": "maybe" })
        assert.notStrictEqual(header, "aborted")
        if (header !== "aborted") assert.strictEqual(header.status, 400)
        const background = yield* post(`${host.url}/v1/responses`, {
          input: "x",
          background: true,
          on_disconnect: "cancel"
        })
        assert.notStrictEqual(background, "aborted")
        if (background !== "aborted") {
          assert.strictEqual(background.status, 400)
          assert.strictEqual(JSON.parse(background.body).error.param, "on_disconnect")
        }
      }))
  })
})
