/**
 * Issue 13 point 15: a channel whose startup fails (the Bot API unreachable at boot) does not take the host down.
 * It is retried with backoff on the Effect clock (TestClock here) while the other channels serve, `GET /readiness`
 * answers 503 naming it, and it becomes ready once an attempt succeeds. A failure that cannot succeed as
 * configured (401 for the token) is logged and not retried.
 */
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, TestClock } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as Telegram from "../src/channels/Telegram/Telegram.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Fake from "./fake/FakeTelegram.js"
import { echoAgent, message, sentTexts } from "./fake/TelegramHarness.js"
import * as TestHost from "./utils/TestHost.js"

// Real time passes for loopback HTTP while the TestClock stands still.
const pause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

const get = (url: string) =>
  Effect.promise(() => fetch(url).then(async (r) => ({ status: r.status, body: await r.text() })))

const postJson = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

const start = (fake: Fake.FakeTelegram, lines: Array<string>) =>
  Effect.gen(function*() {
    const logger = Logger.make(({ message }) => void lines.push(String(message)))
    const layer = TestHost.layer({
      channels: [
        Telegram.make({ token: fake.token, apiBase: fake.url, stream: false, pollingTimeoutSeconds: 1 }),
        Invocations.make(),
        Responses.make()
      ],
      target: Agent.layer(echoAgent([]))
    }).pipe(Layer.provide(FetchHttpClient.layer))
    const context = yield* Layer.build(layer).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    return Context.get(context, AgentHost)
  })

describe("channel startup failures", () => {
  it.scoped("an unreachable Bot API at boot: the host serves, readiness names telegram, retries make it ready", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.fail("getMe", { error_code: 502, description: "Bad Gateway", times: 3 })
      const lines: Array<string> = []
      const host = yield* start(fake, lines)

      const unready = yield* get(`${host.url}/readiness`)
      assert.strictEqual(unready.status, 503)
      const body = JSON.parse(unready.body)
      assert.strictEqual(body.status, "unready")
      // Every channel is listed with its state; only telegram is not ready.
      assert.deepStrictEqual(
        Object.entries(body.channels).filter(([, c]) => !(c as { ready: boolean }).ready).map(([name]) => name),
        ["telegram"]
      )
      assert.isAtLeast(Object.keys(body.channels).length, 2)
      assert.isFalse(body.channels.telegram.ready)
      assert.isTrue(body.channels.telegram.retrying)
      assert.include(body.channels.telegram.reason, "getMe failed")
      assert.deepStrictEqual(body.error.channels, ["telegram"])

      // The other channels serve meanwhile.
      const invoked = yield* postJson(`${host.url}/invocations`, { message: "still here" })
      assert.strictEqual(invoked.status, 200)
      const responded = yield* postJson(`${host.url}/v1/responses`, { input: "also here" })
      assert.strictEqual(responded.status, 200)

      // Backoff on the Effect clock: each adjustment lets the next attempt run; bounded.
      for (let i = 0; i < 100 && fake.callsOf("getMe").length < 4; i++) {
        yield* TestClock.adjust("1 minute")
        yield* pause
      }
      assert.strictEqual(fake.callsOf("getMe").length, 4)
      let ready = yield* get(`${host.url}/readiness`)
      for (let i = 0; i < 100 && ready.status !== 200; i++) {
        yield* pause
        ready = yield* get(`${host.url}/readiness`)
      }
      assert.strictEqual(ready.status, 200)
      const readyBody = JSON.parse(ready.body)
      assert.strictEqual(readyBody.status, "ok")
      assert.deepStrictEqual(readyBody.channels.telegram, { ready: true })
      assert.isTrue(Object.values(readyBody.channels).every((c) => (c as { ready: boolean }).ready))
      assert.strictEqual((yield* get(`${host.url}/liveness`)).status, 200)
      assert.isTrue(lines.some((l) => l.includes("attempt 2") && l.includes("retrying with backoff")))

      // The channel now works: polling delivers a message and the bot answers.
      fake.enqueueUpdate(message(42, "hello bot"))
      yield* fake.waitFor("sendMessage", 1, 10_000)
      assert.strictEqual(sentTexts(fake, 42).length, 1)
    }))

  it.scoped("a token Telegram refuses (401) is logged and not retried; readiness keeps naming telegram", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.fail("getMe", { error_code: 401, description: "Unauthorized", times: 100 })
      const lines: Array<string> = []
      const host = yield* start(fake, lines)
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("1 minute")
        yield* pause
      }
      assert.strictEqual(fake.callsOf("getMe").length, 1)
      assert.isTrue(lines.some((l) => l.includes("not retrying") && l.includes("401")))
      const unready = yield* get(`${host.url}/readiness`)
      assert.strictEqual(unready.status, 503)
      const body = JSON.parse(unready.body)
      assert.isFalse(body.channels.telegram.retrying)
      assert.include(body.channels.telegram.reason, "401")
      assert.strictEqual((yield* postJson(`${host.url}/invocations`, { message: "up" })).status, 200)
    }))
})
