/**
 * A web chat browser id is a bearer (whoever holds it reads the browser's conversations, and once linked with
 * shared sessions, the person's): it must never reach a log line, a span or a metric. A whole linking session (an
 * unlinked message, the challenge, sign-in, messages, unlink) runs with every log level, tracing on, and the
 * logs, span names and attributes and metric labels are searched for the raw id.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Metric } from "effect"
import * as Redact from "../src/domain/Redact.js"
import * as LogLine from "../src/internal/LogLine.js"
import * as FakeIdp from "./fake/FakeIdp.js"
import * as FakeTelegram from "./fake/FakeTelegram.js"
import { message, post, SECRET, sentTexts, signInButtonUrl, updateId } from "./fake/TelegramHarness.js"
import * as CollectingTracer from "./utils/CollectingTracer.js"
import * as WebChatTest from "./utils/WebChatTest.js"

const browserId = "browser-7f3a9c2e41d84b6a"

describe("web chat bearer ids in logs", () => {
  it.scopedLive("a linking session logs, traces and counts the browser by a short tag, never by its id", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => void lines.push(LogLine.formatJson(options)))
      const { spans, tracer } = yield* CollectingTracer.make
      yield* Effect.gen(function*() {
        const idp = yield* FakeIdp.make()
        const fake = yield* FakeTelegram.make()
        const h = yield* WebChatTest.startTelegramAndWebChat(idp, fake, { tracing: true })
        const say = (text: string) =>
          Effect.promise(() =>
            fetch(`${h.host.url}/webchat/messages`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ user: browserId, message: text })
            }).then(async (r) => ({ status: r.status, body: await r.text() }))
          )
        // Before linking: the browser's own conversation key (webchat:<id>:<session>).
        const before = yield* say("hello?")
        assert.strictEqual(before.status, 200, before.body)
        const session = /"session":"([^"]+)"/.exec(before.body)?.[1]
        assert.isString(session, before.body)
        const get = (path: string) => Effect.promise(() => fetch(`${h.host.url}${path}`).then((r) => r.status))
        assert.strictEqual(yield* get(`/webchat/history?user=${browserId}&session=${session}`), 200)
        assert.strictEqual(yield* get(`/webchat/account?user=${browserId}`), 200)
        assert.strictEqual((yield* h.post("/webchat/reset", { user: browserId, session })).status, 200)
        const offer = yield* h.post("/webchat/link", { user: browserId })
        assert.strictEqual(offer.status, 200, JSON.stringify(offer.body))
        const confirmation = yield* Effect.promise(() => fetch(offer.body.url).then((r) => r.text()))
        assert.notInclude(confirmation, browserId)
        assert.strictEqual((yield* FakeIdp.signIn(offer.body.url)).status, 200)
        const answered = yield* say("now?")
        assert.strictEqual(answered.status, 200, answered.body)
        assert.include(answered.body, "echo: now?")
        // The person in Telegram too: a reply there fans out to the browser (a durable push to webchat:<id>), and
        // one here to Telegram.
        const webhook = `${h.host.url}/telegram/webhook`
        yield* post(webhook, message(42, "/link", {}, updateId()), SECRET)
        yield* fake.waitUntil(() => signInButtonUrl(fake, 42) !== undefined)
        assert.strictEqual((yield* FakeIdp.signIn(signInButtonUrl(fake, 42)!)).status, 200)
        yield* post(webhook, message(42, "from telegram", {}, updateId()), SECRET)
        yield* fake.waitUntil(() => sentTexts(fake, 42).includes("echo: from telegram"))
        const again = yield* say("and from here")
        assert.strictEqual(again.status, 200, again.body)
        yield* fake.waitUntil(() => sentTexts(fake, 42).some((t) => t.includes("echo: and from here")))
        // Lets the durable push to the browser run, so its logs are searched too (it logs nothing when it succeeds:
        // a shorter wait only searches less, it cannot fail the test).
        yield* Effect.sleep("500 millis")
        assert.deepStrictEqual((yield* h.post("/webchat/unlink", { user: browserId })).body, { unlinked: true })
      }).pipe(
        Effect.scoped,
        Effect.withTracer(tracer),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
      // The session did log about the browser (by its tag), so the search below searched something.
      assert.isAbove(lines.length, 5)
      assert.isAbove(spans.length, 5)
      const leaks = [
        ...lines,
        ...spans.flatMap((span) => [
          `span ${span.name}`,
          ...[...span.attributes].map(([name, value]) => `span ${span.name}: ${name}=${String(value)}`)
        ]),
        ...Metric.unsafeSnapshot().map((pair) => `metric ${JSON.stringify(pair.metricKey)}`)
      ].filter((text) => text.includes(browserId))
      assert.deepStrictEqual(leaks, [])
      // The tag is what they say instead.
      assert.isTrue(lines.some((line) => line.includes(Redact.tag(browserId))))
    }))
})

describe("Redact", () => {
  it("tags an identity token's native id and keeps its channel; a bare name stays", () => {
    assert.match(Redact.tag(browserId), /^[0-9a-f]{8}$/)
    assert.strictEqual(Redact.tag(browserId), Redact.tag(browserId))
    assert.notStrictEqual(Redact.tag(browserId), Redact.tag(`${browserId}x`))
    assert.strictEqual(Redact.token(`webchat:${browserId}`), `webchat:#${Redact.tag(browserId)}`)
    assert.strictEqual(Redact.token("webchat:a:b"), `webchat:#${Redact.tag("a:b")}`)
    assert.strictEqual(Redact.token("active"), "active")
  })
})
