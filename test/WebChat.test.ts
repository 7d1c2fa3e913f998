import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Stream, TestClock } from "effect"
import * as PushHub from "../src/channels/WebChat/PushHub.js"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as Server from "../src/Server.js"
import type { Frame } from "./utils/WebChatTest.js"
import { layerInlinePush, openSse, relay, request } from "./utils/WebChatTest.js"

const hostLayer = layerInlinePush({
  channels: [WebChat.make({ pushQueue: { maxEvents: 3, ttl: "10 minutes" } }), relay],
  target: DefaultAgent.layer,
  settings: { maxBodyBytes: 64 * 1024 }
})

let counter = 0
const freshId = (prefix: string) => `${prefix}${(++counter).toString().padStart(6, "0")}${Date.now().toString(36)}`

const payload = (frame: Frame) => JSON.parse(frame.data)

/** Posts a message and reads the whole SSE reply. */
const say = (url: string, body: Record<string, unknown>) =>
  Effect.scoped(Effect.gen(function*() {
    const sse = yield* openSse(`${url}/webchat/messages`, {
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" }
    })
    assert.strictEqual(sse.status, 200)
    assert.include(sse.headers.get("content-type") ?? "", "text/event-stream")
    const frames: Array<Frame> = [...yield* sse.take(1)]
    while (frames[frames.length - 1]!.event !== "done" && frames[frames.length - 1]!.event !== "error") {
      frames.push(...yield* sse.take(1))
    }
    return frames
  }))

const relayTo = (url: string, to: string, message: string, echo = false) =>
  Effect.tap(
    request(`${url}/relay`, { body: JSON.stringify({ to, message, echo }) }),
    (r) => assert.strictEqual(r.status, 200, r.text)
  )

describe("WebChat", () => {
  layer(hostLayer)((it) => {
    it.effect("serves the page and its assets with content types and caching headers", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const page = yield* request(`${host.url}/`)
        assert.strictEqual(page.status, 200)
        assert.strictEqual(page.headers.get("content-type"), "text/html; charset=utf-8")
        assert.strictEqual(page.headers.get("cache-control"), "no-cache")
        assert.include(page.headers.get("content-security-policy") ?? "", "script-src 'self'")
        assert.strictEqual(page.headers.get("x-content-type-options"), "nosniff")
        assert.include(page.text, "<meta name=\"webchat-api\" content=\"/webchat\">")
        const version = /app\.js\?v=([\w-]+)/.exec(page.text)?.[1]
        assert.isDefined(version)
        const script = yield* request(`${host.url}/webchat/app.js?v=${version}`)
        assert.strictEqual(script.status, 200)
        assert.strictEqual(script.headers.get("content-type"), "text/javascript; charset=utf-8")
        assert.strictEqual(script.headers.get("cache-control"), "public, max-age=31536000, immutable")
        assert.include(script.text, "renderMarkdown")
        const unversioned = yield* request(`${host.url}/webchat/app.js`)
        assert.strictEqual(unversioned.headers.get("cache-control"), "no-cache")
        const style = yield* request(`${host.url}/webchat/style.css?v=${version}`)
        assert.strictEqual(style.headers.get("content-type"), "text/css; charset=utf-8")
        // The Markdown renderer is served by the host from its own package (no CDN), before the page's script.
        assert.include(page.text, `<script src="/webchat/vendor/markdown-it.min.js?v=${version}" defer></script>`)
        assert.isBelow(page.text.indexOf("markdown-it.min.js"), page.text.indexOf("app.js"))
        assert.notMatch(page.text, /src="(https?:)?\/\//)
        const renderer = yield* request(`${host.url}/webchat/vendor/markdown-it.min.js?v=${version}`)
        assert.strictEqual(renderer.status, 200)
        assert.strictEqual(renderer.headers.get("content-type"), "text/javascript; charset=utf-8")
        assert.strictEqual(renderer.headers.get("cache-control"), "public, max-age=31536000, immutable")
        assert.match(renderer.text, /^\/\*! markdown-it \d+\.\d+\.\d+ .* @license MIT \*\//)
        const etag = page.headers.get("etag")!
        const again = yield* request(`${host.url}/`, { headers: { "if-none-match": etag } })
        assert.strictEqual(again.status, 304)
        assert.strictEqual(again.text, "")
      }))

    it.effect("streams a reply as SSE deltas, keeps history, and starts over on reset", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        const session = freshId("s")
        const frames = yield* say(host.url, { user, session, message: "hello *there*" })
        assert.strictEqual(frames[0]!.event, "start")
        assert.deepStrictEqual(payload(frames[0]!), { session })
        const deltas = frames.filter((f) => f.event === "delta").map((f) => payload(f).text as string)
        assert.isAbove(deltas.length, 3, "the reply arrives in pieces")
        const done = payload(frames[frames.length - 1]!)
        assert.strictEqual(frames[frames.length - 1]!.event, "done")
        assert.strictEqual(done.text, deltas.join(""))
        assert.include(done.text, "You said: \"hello *there*\". This is turn 1")
        const second = yield* say(host.url, { user, session, message: "again" })
        assert.include(payload(second[second.length - 1]!).text, "turn 2")

        const history = yield* request(`${host.url}/webchat/history?user=${user}&session=${session}`)
        assert.strictEqual(history.status, 200)
        assert.deepStrictEqual(history.body.messages.map((m: { role: string }) => m.role), [
          "user",
          "assistant",
          "user",
          "assistant"
        ])
        assert.strictEqual(history.body.messages[0].text, "hello *there*")

        const reset = yield* request(`${host.url}/webchat/reset`, { body: JSON.stringify({ user, session }) })
        assert.strictEqual(reset.status, 200)
        const after = yield* request(`${host.url}/webchat/history?user=${user}&session=${session}`)
        assert.deepStrictEqual(after.body.messages, [])
        const fresh = yield* say(host.url, { user, session, message: "new start" })
        assert.include(payload(fresh[fresh.length - 1]!).text, "turn 1")
      }))

    it.effect("starts a new conversation for a missing or unknown session id", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        const frames = yield* say(host.url, { user, message: "no session" })
        const session = payload(frames[0]!).session as string
        assert.match(session, WebChat.idPattern)
        assert.include(payload(frames[frames.length - 1]!).text, "turn 1")
        const unknown = yield* request(`${host.url}/webchat/history?user=${user}&session=neverseen1`)
        assert.strictEqual(unknown.status, 200)
        assert.deepStrictEqual(unknown.body.messages, [])
        const first = yield* say(host.url, { user, session: "neverseen1", message: "hi" })
        assert.include(payload(first[first.length - 1]!).text, "turn 1")
      }))

    it.effect("rejects bad input with JSON errors and stays up", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        const post = (body: string) => request(`${host.url}/webchat/messages`, { body })
        const expectError = (r: { status: number; body: any }, status: number, type: string) => {
          assert.strictEqual(r.status, status, JSON.stringify(r.body))
          assert.strictEqual(r.body.error.type, type)
          assert.isString(r.body.error.message)
        }
        expectError(yield* post(JSON.stringify({ user: "short", message: "x" })), 400, "invalid_user")
        expectError(yield* post(JSON.stringify({ user: "has spaces in it", message: "x" })), 400, "invalid_user")
        expectError(yield* post(JSON.stringify({ user: "a".repeat(65), message: "x" })), 400, "invalid_user")
        expectError(yield* post(JSON.stringify({ user, session: "../../etc", message: "x" })), 400, "invalid_session")
        expectError(yield* post(JSON.stringify({ user, message: "  " })), 400, "invalid_message")
        expectError(yield* post(JSON.stringify({ user, message: 42 })), 400, "invalid_message")
        expectError(yield* post("{nope"), 400, "invalid_json")
        expectError(yield* post("[1]"), 400, "invalid_request")
        const long = yield* post(JSON.stringify({ user, message: "x".repeat(WebChat.defaultMaxMessageChars + 1) }))
        expectError(long, 413, "message_too_long")
        assert.include(long.body.error.message, `the limit is ${WebChat.defaultMaxMessageChars}`)
        expectError(yield* post(JSON.stringify({ user, message: "x".repeat(70 * 1024) })), 413, "request_too_large")
        expectError(yield* request(`${host.url}/webchat/history?user=${user}`), 400, "invalid_session")
        expectError(yield* request(`${host.url}/webchat/events?user=%3Cscript%3E`), 400, "invalid_user")
        expectError(
          yield* request(`${host.url}/webchat/reset`, { body: JSON.stringify({ user, session: "x" }) }),
          400,
          "invalid_session"
        )
        const ok = yield* say(host.url, { user, message: "still up" })
        assert.strictEqual(ok[ok.length - 1]!.event, "done")
      }))

    it.scoped("delivers pushes live to every open page of the identity, echo first", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        const pageA = yield* openSse(`${host.url}/webchat/events?user=${user}`)
        const pageB = yield* openSse(`${host.url}/webchat/events?user=${user}`)
        assert.strictEqual(pageA.status, 200)
        assert.include(pageA.headers.get("content-type") ?? "", "text/event-stream")
        yield* pageA.comment("connected")
        yield* pageB.comment("connected")
        yield* relayTo(host.url, user, "ping from relay", true)
        for (const page of [pageA, pageB]) {
          const [echo, reply] = yield* page.take(2)
          assert.deepStrictEqual(payload(echo!), {
            kind: "echo",
            messages: [{ role: "user", text: "ping from relay" }]
          })
          assert.strictEqual(payload(reply!).kind, "reply")
          assert.include(payload(reply!).messages[0].text, "You said: \"ping from relay\"")
          assert.include(payload(reply!).messages[0].text, "over the relay channel")
          assert.match(reply!.id!, /^[a-z0-9]+-2$/)
        }
      }))

    it.scoped("resumes from Last-Event-ID after a disconnect", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        const events = `${host.url}/webchat/events?user=${user}`
        const ids = yield* Effect.scoped(Effect.gen(function*() {
          const page = yield* openSse(events)
          yield* page.comment("connected")
          yield* relayTo(host.url, user, "one")
          yield* relayTo(host.url, user, "two")
          const frames = yield* page.take(2)
          return frames.map((f) => f.id!)
        }))
        yield* relayTo(host.url, user, "three")
        const resumed = yield* openSse(events, { headers: { "last-event-id": ids[0]! } })
        const replay = yield* resumed.take(2)
        assert.deepStrictEqual(replay.map((f) => f.id), [ids[1], replay[1]!.id])
        assert.include(payload(replay[0]!).messages[0].text, "\"two\"")
        assert.include(payload(replay[1]!).messages[0].text, "\"three\"")

        // The page's own copy of the id (query) works too; the header wins when both are sent.
        const viaQuery = yield* openSse(`${events}&last_event_id=${replay[1]!.id}`)
        yield* viaQuery.comment("connected")
        const both = yield* openSse(`${events}&last_event_id=${replay[1]!.id}`, {
          headers: { "last-event-id": ids[1]! }
        })
        yield* both.comment("connected")
        yield* relayTo(host.url, user, "four")
        assert.include(payload((yield* viaQuery.take(1))[0]!).messages[0].text, "\"four\"")
        const fromHeader = yield* both.take(2)
        assert.include(payload(fromHeader[0]!).messages[0].text, "\"three\"")
        assert.include(payload(fromHeader[1]!).messages[0].text, "\"four\"")

        // An id from another boot (or garbage) replays everything still buffered.
        const stale = yield* openSse(events, { headers: { "last-event-id": "otherboot-1" } })
        const all = yield* stale.take(3)
        assert.deepStrictEqual(
          all.map((f) => payload(f).messages[0].text.match(/"(\w+)"/)[1]),
          ["two", "three", "four"],
          "the queue keeps the last 3 events"
        )
      }))

    it.scoped("queues pushes for an identity with no open page, bounded by count and age", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const user = freshId("u")
        for (const n of ["p1", "p2", "p3", "p4", "p5"]) yield* relayTo(host.url, user, n)
        const page = yield* openSse(`${host.url}/webchat/events?user=${user}`)
        const queued = yield* page.take(3)
        assert.deepStrictEqual(
          queued.map((f) => payload(f).messages[0].text.match(/"(\w+)"/)[1]),
          ["p3", "p4", "p5"]
        )

        const later = freshId("u")
        yield* relayTo(host.url, later, "old")
        yield* TestClock.adjust("11 minutes")
        yield* relayTo(host.url, later, "new")
        const reconnect = yield* openSse(`${host.url}/webchat/events?user=${later}`)
        const [first] = yield* reconnect.take(1)
        assert.include(payload(first!).messages[0].text, "\"new\"", "the expired push is gone")
      }))
  })
})

describe("WebChat PushHub", () => {
  const collect = (stream: Stream.Stream<PushHub.Subscribed | PushHub.PushEvent>, count: number) =>
    Effect.map(
      Stream.runCollect(Stream.take(Stream.filter(stream, (e) => e._tag === "PushEvent"), count)),
      (chunk) => [...chunk].map((e) => (e as PushHub.PushEvent).data)
    )

  it.scoped("ignores a repeated idempotency key and bounds bytes and identities", () =>
    Effect.gen(function*() {
      const hub = yield* PushHub.make({ maxBytesPerIdentity: 10, maxIdentities: 2 })
      yield* hub.publish("alice", "k1", "aaaa")
      yield* hub.publish("alice", "k1", "aaaa")
      yield* hub.publish("alice", "k2", "bbbb")
      yield* hub.publish("alice", "k3", "cccc")
      assert.deepStrictEqual(yield* collect(hub.subscribe("alice", undefined), 2), ["bbbb", "cccc"])
      yield* hub.publish("bob", "k1", "b")
      yield* hub.publish("carol", "k1", "c")
      const stats = yield* hub.stats
      assert.strictEqual(stats.identities, 2)
      assert.strictEqual(stats.bytes, 2, "alice (idle, least recent) was evicted")
      yield* hub.publish("dave", "k1", "d")
      assert.deepStrictEqual(yield* collect(hub.subscribe("dave", undefined), 1), ["d"])
    }))

  it.scoped("closes the oldest subscription past the per-identity limit", () =>
    Effect.gen(function*() {
      const hub = yield* PushHub.make({ maxSubscribers: 1 })
      const first = yield* Effect.fork(Stream.runCollect(hub.subscribe("erin", undefined)))
      yield* Effect.yieldNow()
      yield* Effect.fork(Stream.runDrain(hub.subscribe("erin", undefined)))
      yield* Effect.yieldNow()
      const ended = yield* Fiber.join(first)
      assert.deepStrictEqual([...ended].map((e) => e._tag), ["Subscribed"])
      assert.strictEqual((yield* hub.stats).subscribers, 1)
    }))
})

describe("WebChat configuration", () => {
  layer(
    layerInlinePush({ channels: [WebChat.make({ path: "/chat", title: "Help <desk>" })], target: DefaultAgent.layer })
  )((it) => {
    it.effect("serves the page at a configured path with its endpoints under it", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const page = yield* request(`${host.url}/chat`)
        assert.strictEqual(page.status, 200)
        assert.include(page.text, "content=\"/chat/webchat\"")
        assert.include(page.text, "<title>Help &lt;desk&gt;</title>")
        assert.strictEqual((yield* request(`${host.url}/`)).status, 404)
        assert.strictEqual((yield* request(`${host.url}/chat/webchat/style.css`)).status, 200)
        const history = yield* request(`${host.url}/chat/webchat/history?user=abcdefgh&session=abcdefgh`)
        assert.deepStrictEqual(history.body.messages, [])
      }))
  })

  it.effect("is on by default and off with AGENT_HOST_WEBCHAT=false", () =>
    Effect.gen(function*() {
      const names = (env: Record<string, string>) =>
        Effect.map(
          Effect.withConfigProvider(Server.channelsFromEnv, ConfigProvider.fromMap(new Map(Object.entries(env)))),
          (channels) => channels.map((c) => c.name)
        )
      assert.include(yield* names({}), "webchat")
      assert.notInclude(yield* names({ AGENT_HOST_WEBCHAT: "false" }), "webchat")
    }))
})
