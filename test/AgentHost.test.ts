import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Layer, Logger, Metric, Option, Scope, Stream, TestClock } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { ChannelContribution, ChannelHooks } from "../src/core/Channel.js"
import * as Channel from "../src/core/Channel.js"
import { RequestContext } from "../src/core/RequestContext.js"
import * as Turns from "../src/core/Turns.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import { ChannelStartupError } from "../src/domain/Errors.js"
import type { IsolationKey } from "../src/domain/Ids.js"
import { responseText, userMessage } from "../src/domain/Message.js"
import { json, readJson } from "../src/http/HttpBody.js"
import * as Sse from "../src/http/Sse.js"
import * as StateStore from "../src/state/StateStore.js"
import * as PushChannels from "./utils/PushChannels.js"
import * as TestHost from "./utils/TestHost.js"

/** A channel for tests: POST /probe/run {text, key?, stream?} runs a turn and answers its text. */
const probe = (extra: Partial<ChannelContribution> & { readonly hooks?: ChannelHooks } = {}) =>
  Channel.make("probe", (ctx) =>
    Effect.succeed({
      path: "/probe",
      routes: [{
        method: "POST",
        path: "/run",
        handler: (input) =>
          Effect.gen(function*() {
            const body = (yield* Effect.orDie(readJson(input.request, 1 << 20))) as {
              text: string
              key?: string
              stream?: boolean
              reset?: boolean
            }
            if (body.reset === true && body.key !== undefined) return json({ alias: yield* ctx.resetSession(body.key) })
            const request: ChannelRequest = {
              channel: "probe",
              operation: "message.create",
              input: [userMessage(body.text)],
              ...(body.key === undefined ? {} : { session: { isolationKey: body.key as IsolationKey } }),
              stream: body.stream === true
            }
            if (request.stream) {
              const turn = yield* Effect.orDie(ctx.runStream(request))
              return Sse.response(
                turn.updates.pipe(
                  Stream.map((u) => Sse.frame(u.contents.map((c) => (c._tag === "text" ? c.text : "")).join(""))),
                  Stream.catchAll((e) => Stream.make(Sse.frame(e.message, "error")))
                )
              )
            }
            const exit = yield* Effect.exit(ctx.run(request, body))
            if (Exit.isFailure(exit)) {
              const failure = Cause.failureOption(exit.cause)
              return json({ error: Option.isSome(failure) ? failure.value._tag : "defect" }, 500)
            }
            const shaped = exit.value.originating
            return json({ text: Option.isSome(shaped) ? responseText(shaped.value.response) : null })
          })
      }],
      ...extra
    }))

const contextAgent = Agent.make({
  name: "context-echo",
  run: () =>
    Effect.map(RequestContext, (ctx) => ({
      messages: [{ role: "assistant", contents: [{ _tag: "text", text: JSON.stringify(ctx.isolation) }] }]
    })) as never
})

const call = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body: JSON.stringify(body), headers }).then(async (r) => ({
      status: r.status,
      body: await r.text()
    }))
  )

const withHost = <A, E>(
  options: TestHost.Options<never, never>,
  f: (host: AgentHost["Type"]) => Effect.Effect<A, E>
) =>
  Effect.flatMap(
    Layer.build(TestHost.layer(options)),
    (ctx) => f(ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"])
  )

/** Streams `first`, then `second` once `release` completes: a turn a test can hold open mid-stream. */
const twoPartAgent = (first: string, second: string, release: Deferred.Deferred<void>) =>
  Agent.make({
    name: "slow",
    stream: () =>
      Stream.concat(
        Stream.make({ messageId: "m", role: "assistant" as const, contents: [{ _tag: "text" as const, text: first }] }),
        Stream.fromEffect(
          Effect.as(Deferred.await(release), {
            messageId: "m",
            role: "assistant" as const,
            contents: [{ _tag: "text" as const, text: second }]
          })
        )
      )
  })

describe("AgentHost", () => {
  it.scoped("serves GET /readiness (every channel and its state), GET /liveness, 404 and 405 as JSON", () =>
    withHost({ channels: [Invocations.make()] }, (host) =>
      Effect.gen(function*() {
        const ready = yield* Effect.promise(() => fetch(`${host.url}/readiness`))
        assert.strictEqual(ready.status, 200)
        assert.deepStrictEqual(yield* Effect.promise(() => ready.json()), {
          status: "ok",
          channels: { invocations: { ready: true } }
        })
        const live = yield* Effect.promise(() => fetch(`${host.url}/liveness`))
        assert.strictEqual(live.status, 200)
        assert.deepStrictEqual(yield* Effect.promise(() => live.json()), { status: "alive" })
        const missing = yield* Effect.promise(() => fetch(`${host.url}/nope`))
        assert.strictEqual(missing.status, 404)
        assert.strictEqual((yield* Effect.promise(() => missing.json())).error.type, "not_found")
        const wrongMethod = yield* Effect.promise(() => fetch(`${host.url}/invocations`))
        assert.strictEqual(wrongMethod.status, 405)
        assert.strictEqual(wrongMethod.headers.get("allow"), "POST")
      })))

  it.scoped("a channel cannot shadow /readiness", () =>
    Effect.gen(function*() {
      const shadow = Channel.make("shadow", () =>
        Effect.succeed({
          path: "",
          routes: [{ method: "GET", path: "/readiness", handler: () => Effect.succeed(json({ hijacked: true })) }]
        }))
      const exit = yield* Effect.exit(Layer.build(TestHost.layer({ channels: [shadow] })))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "already served")
    }))

  it.scoped("isolation headers reach the agent only when trusted; invalid ones are rejected", () =>
    Effect.gen(function*() {
      const headers = { "x-agent-user-isolation-key": "user-1", "x-agent-chat-isolation-key": "chat-1" }
      yield* withHost({ channels: [probe()], target: Agent.layer(contextAgent) }, (host) =>
        Effect.gen(function*() {
          const res = yield* call(`${host.url}/probe/run`, { text: "hi" }, headers)
          assert.deepStrictEqual(JSON.parse(JSON.parse(res.body).text), {})
        }))
      yield* withHost(
        { channels: [probe()], target: Agent.layer(contextAgent), settings: { trustIsolationHeaders: true } },
        (host) =>
          Effect.gen(function*() {
            const res = yield* call(`${host.url}/probe/run`, { text: "hi" }, headers)
            assert.deepStrictEqual(JSON.parse(JSON.parse(res.body).text), { user: "user-1", chat: "chat-1" })
            // Streaming turns see the same context for the whole stream.
            const streamed = yield* call(`${host.url}/probe/run`, { text: "hi", key: "ctx", stream: true }, headers)
            const data = streamed.body.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("")
            assert.deepStrictEqual(JSON.parse(data), { user: "user-1", chat: "chat-1" })
            const bad = yield* call(`${host.url}/probe/run`, { text: "hi" }, {
              "x-agent-chat-isolation-key": "x".repeat(300)
            })
            assert.strictEqual(bad.status, 400)
            assert.include(JSON.parse(bad.body).error.message, "x-agent-chat-isolation-key")
          })
      )
    }))

  // Issue 13 point 15 changed this deliberately: a failed startup used to abort boot; now the host serves the
  // other channels, readiness names the failed ones, and retryable failures are retried with backoff.
  it.scoped("startup failures keep the host up: each logged by channel, named by readiness, retried until ready", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ annotations, message }) => {
        const channel = [...annotations].find(([k]) => k === "channel")?.[1]
        lines.push(`${String(message)}|${String(channel)}`)
      })
      let firstAttempts = 0
      const first = Channel.make("first", () =>
        Effect.succeed({
          path: "/first",
          routes: [],
          startup: Effect.suspend(() =>
            ++firstAttempts < 3 ?
              Effect.fail(new ChannelStartupError({ channel: "first", message: "first cannot start yet" })) :
              Effect.void
          )
        }))
      const second = Channel.make("second", () =>
        Effect.succeed({
          path: "/second",
          routes: [],
          startup: Effect.fail(
            new ChannelStartupError({ channel: "second", message: "second is misconfigured", retryable: false })
          )
        }))
      let stopped = 0
      const ok = Channel.make(
        "fine",
        () => Effect.as(Effect.addFinalizer(() => Effect.sync(() => stopped++)), { path: "/fine", routes: [] })
      )
      const scope = yield* Scope.make()
      const context = yield* Layer.build(TestHost.layer({ channels: [ok, first, second] })).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Scope.extend(scope)
      )
      const host = Context.get(context, AgentHost)
      const readiness = () =>
        Effect.promise(() =>
          fetch(`${host.url}/readiness`).then(async (r) => ({ status: r.status, body: await r.json() }))
        )
      const before = yield* readiness()
      assert.strictEqual(before.status, 503)
      assert.deepStrictEqual(before.body.error.channels.sort(), ["first", "second"])
      assert.deepStrictEqual(before.body.channels.fine, { ready: true })
      assert.isFalse(before.body.channels.first.ready)
      assert.isTrue(before.body.channels.first.retrying)
      assert.isFalse(before.body.channels.second.retrying)
      assert.isTrue(lines.some((l) => l.includes("channel startup failed") && l.endsWith("|first")))
      assert.isTrue(lines.some((l) => l.includes("channel startup failed") && l.endsWith("|second")))
      // Backoff on the TestClock: 1 s, then 2 s.
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(firstAttempts, 3)
      const after = yield* readiness()
      assert.strictEqual(after.status, 503)
      assert.deepStrictEqual(after.body.error.channels, ["second"])
      assert.deepStrictEqual(after.body.channels.first, { ready: true })
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(stopped, 1, "the channel that had started was shut down")
    }))

  it.scoped("shutdown runs every channel finalizer even when one fails", () =>
    Effect.gen(function*() {
      const stopped: Array<string> = []
      const channel = (name: string, fail: boolean) =>
        Channel.make(name, () =>
          Effect.as(
            Effect.addFinalizer(() => fail ? Effect.die(`${name} broke`) : Effect.sync(() => void stopped.push(name))),
            { path: `/${name}`, routes: [] }
          ))
      yield* Effect.scoped(
        Layer.build(TestHost.layer({ channels: [channel("a", false), channel("b", true), channel("c", false)] }))
      )
      assert.deepStrictEqual(stopped.sort(), ["a", "c"])
    }))

  it.scoped("hooks: run hook rewrites input, stream transform drops updates, response hook shapes the reply", () =>
    Effect.gen(function*() {
      const hooks: ChannelHooks = {
        run: (request) => Effect.succeed({ ...request, input: [userMessage("rewritten")] }),
        streamTransform: (update) =>
          Effect.succeed(
            update.contents.some((c) => c._tag === "text" && c.text.includes("rewritten"))
              ? Option.none()
              : Option.some(update)
          ),
        response: (result) =>
          Effect.succeed({
            ...result,
            response: {
              ...result.response,
              messages: [{ role: "assistant", contents: [{ _tag: "text", text: "shaped" }] }]
            }
          })
      }
      yield* withHost({ channels: [probe({ hooks })] }, (host) =>
        Effect.gen(function*() {
          const res = yield* call(`${host.url}/probe/run`, { text: "original", key: "h1" })
          assert.strictEqual(JSON.parse(res.body).text, "shaped")
          const streamed = yield* call(`${host.url}/probe/run`, { text: "original", key: "h2", stream: true })
          const text = streamed.body.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("")
          assert.notInclude(text, "rewritten")
          assert.include(text, "You said")
        }))
    }))

  it.scoped("resetSession rotates the alias: the next turn starts a fresh history", () =>
    withHost({ channels: [probe()] }, (host) =>
      Effect.gen(function*() {
        const turn = (text: string) =>
          Effect.map(call(`${host.url}/probe/run`, { text, key: "r" }), (r) => JSON.parse(r.body).text)
        assert.include(yield* turn("one"), "turn 1")
        assert.include(yield* turn("two"), "turn 2")
        const reset = JSON.parse((yield* call(`${host.url}/probe/run`, { text: "", key: "r", reset: true })).body)
        assert.match(reset.alias, /^r#[0-9a-f]{32}$/)
        assert.include(yield* turn("three"), "turn 1")
        assert.include(yield* turn("four"), "turn 2")
      })))

  it.scoped("a turn sees only the most recent messages (AGENT_HOST_HISTORY_LIMIT)", () =>
    withHost({ channels: [probe()], settings: { historyLimit: 4 } }, (host) =>
      Effect.gen(function*() {
        const turn = (text: string) =>
          Effect.map(call(`${host.url}/probe/run`, { text, key: "lim" }), (r) => JSON.parse(r.body).text)
        assert.include(yield* turn("one"), "turn 1")
        assert.include(yield* turn("two"), "turn 2")
        assert.include(yield* turn("three"), "turn 3")
        // Four messages of history (two earlier turns) are all a turn sees from now on.
        assert.include(yield* turn("four"), "turn 3")
        assert.include(yield* turn("five"), "turn 3")
      })))

  it.scopedLive("a client that disconnects mid-stream does not cancel the turn; its result is recorded", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const slow = twoPartAgent("first ", "second", release)
      const store = yield* StateStore.makeMemory
      yield* withHost(
        { channels: [probe()], target: Agent.layer(slow), store: Layer.succeed(StateStore.StateStore, store) },
        (host) =>
          Effect.gen(function*() {
            const controller = new AbortController()
            const res = yield* Effect.promise(() =>
              fetch(`${host.url}/probe/run`, {
                method: "POST",
                body: JSON.stringify({ text: "go", key: "dc", stream: true }),
                signal: controller.signal
              })
            )
            const reader = res.body!.getReader()
            const first = yield* Effect.promise(() => reader.read())
            assert.include(new TextDecoder().decode(first.value), "first")
            controller.abort()
            yield* Effect.promise(() => reader.cancel().catch(() => undefined))
            yield* Deferred.succeed(release, void 0)
            // The turn completes in its session actor and is written to history.
            const history = yield* store.loadHistory("dc").pipe(
              Effect.delay("5 millis"),
              Effect.repeat({ until: (h) => h.length >= 2 }),
              Effect.timeout("10 seconds")
            )
            assert.strictEqual(responseText({ messages: history.slice(1) }), "first second")
          })
      )
    }))

  it.scopedLive("a streaming caller that goes away changes nothing: the turn still pushes and is recorded", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const slow = twoPartAgent("a ", "b", release)
      const pushed: Array<PushChannels.Delivery> = []
      // Trusted code (a run hook) sends every Invocations reply to beta:friend as well.
      const invocations = Invocations.make({
        hooks: {
          run: (request) =>
            Effect.succeed({
              ...request,
              responseTarget: { kind: "channels", targets: ["originating", "beta:friend"] }
            })
        }
      })
      const store = yield* StateStore.makeMemory
      yield* withHost(
        {
          channels: [invocations, PushChannels.make("beta", pushed)],
          target: Agent.layer(slow),
          store: Layer.succeed(StateStore.StateStore, store)
        },
        (host) =>
          Effect.gen(function*() {
            const controller = new AbortController()
            const res = yield* Effect.promise(() =>
              fetch(`${host.url}/invocations`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ message: "go", session_id: "gone", stream: true }),
                signal: controller.signal
              })
            )
            const reader = res.body!.getReader()
            const first = yield* Effect.promise(() => reader.read())
            assert.include(new TextDecoder().decode(first.value), "a")
            controller.abort()
            yield* Effect.promise(() => reader.cancel().catch(() => undefined))
            yield* Deferred.succeed(release, void 0)
            // Delivery belongs to the turn, not to the caller's response stream: the push lands anyway.
            yield* Effect.sync(() => pushed.length).pipe(
              Effect.delay("5 millis"),
              Effect.repeat({ until: (n) => n >= 1 }),
              Effect.timeout("10 seconds")
            )
            assert.strictEqual(pushed[0]!.nativeId, "friend")
            assert.strictEqual(pushed[0]!.text, "a b")
            const history = yield* store.loadHistory("invocations:gone")
            assert.strictEqual(responseText({ messages: history.slice(1) }), "a b")
          })
      )
    }))

  it.scoped("turns are counted per channel by agent_host_turns_total (no log line per turn at info)", () =>
    withHost({ channels: [Invocations.make()] }, (host) =>
      Effect.gen(function*() {
        const counter = Metric.tagged(Turns.turnsTotal, "channel", "invocations")
        const before = (yield* Metric.value(counter)).count
        for (let i = 0; i < 2; i++) {
          const res = yield* Effect.promise(() =>
            fetch(`${host.url}/invocations`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ message: "count me" })
            })
          )
          assert.strictEqual(res.status, 200)
        }
        // A refused request is not a turn.
        const bad = yield* Effect.promise(() =>
          fetch(`${host.url}/invocations`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ nothing: true })
          })
        )
        assert.isAtLeast(bad.status, 400)
        assert.strictEqual((yield* Metric.value(counter)).count - before, 2)
      })))

  it.scopedLive("a blocking caller that goes away changes nothing: the turn, run in its fiber, completes and is recorded", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const slow = Agent.make({
        name: "slow",
        run: () =>
          Effect.zipRight(
            Effect.zipRight(Deferred.succeed(started, void 0), Deferred.await(release)),
            Effect.succeed({
              messages: [{ role: "assistant" as const, contents: [{ _tag: "text" as const, text: "done" }] }]
            })
          )
      })
      const store = yield* StateStore.makeMemory
      yield* withHost(
        { channels: [probe()], target: Agent.layer(slow), store: Layer.succeed(StateStore.StateStore, store) },
        (host) =>
          Effect.gen(function*() {
            const controller = new AbortController()
            const pending = fetch(`${host.url}/probe/run`, {
              method: "POST",
              body: JSON.stringify({ text: "go", key: "blocking-gone" }),
              signal: controller.signal
            }).catch(() => "aborted")
            yield* Deferred.await(started)
            controller.abort()
            assert.strictEqual(yield* Effect.promise(() => pending), "aborted")
            // Let the server see the closed connection before the turn may finish.
            yield* Effect.sleep("100 millis")
            yield* Deferred.succeed(release, void 0)
            const history = yield* store.loadHistory("blocking-gone").pipe(
              Effect.delay("5 millis"),
              Effect.repeat({ until: (h) => h.length >= 2 }),
              Effect.timeout("10 seconds")
            )
            assert.strictEqual(responseText({ messages: history.slice(1) }), "done")
          })
      )
    }))
})
