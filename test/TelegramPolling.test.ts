import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Scope, TestClock } from "effect"
import * as Agent from "../src/core/Agent.js"
import { assistantMessage } from "../src/domain/Message.js"
import * as StateStore from "../src/state/StateStore.js"
import * as Fake from "./fake/FakeTelegram.js"
import * as Harness from "./fake/TelegramHarness.js"
import { message, post, sentTexts } from "./fake/TelegramHarness.js"
import * as ServerProcess from "./utils/ServerProcess.js"

// Real time passes for HTTP round trips while the TestClock stands still.
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 200)))

const polling = { pollingTimeoutSeconds: 1 } as const

describe("Telegram polling", () => {
  it.scoped("long-polls with offsets and resumes from the stored offset after a restart", () =>
    Effect.gen(function*() {
      const store = yield* StateStore.makeMemory
      const storeLayer = Layer.succeed(StateStore.StateStore, store)
      const fake = yield* Fake.make()
      const first = fake.enqueueUpdate(message(1, "one"))
      const second = fake.enqueueUpdate(message(2, "two"))
      const scope = yield* Scope.make()
      const h = yield* Harness.start({ fake, webhook: false, store: storeLayer, options: polling }).pipe(
        Scope.extend(scope)
      )
      assert.deepStrictEqual(h.fake.callsOf("deleteWebhook")[0]!.params, { drop_pending_updates: false })
      assert.strictEqual(h.fake.callsOf("setWebhook").length, 0)
      yield* fake.waitFor("sendMessage", 2)
      assert.deepStrictEqual(sentTexts(fake, 1), ["echo: one (history 0)"])
      assert.deepStrictEqual(sentTexts(fake, 2), ["echo: two (history 0)"])
      const calls = yield* fake.waitFor("getUpdates", 2)
      assert.isUndefined(calls[0]!.params.offset)
      assert.deepStrictEqual(calls[0]!.params.allowed_updates, ["message", "edited_message", "callback_query"])
      assert.strictEqual(calls[1]!.params.offset, second + 1)
      assert.isAbove(second, first)
      const cursor = yield* store.getCursor(`telegram:${fake.botId}:offset`)
      assert.deepStrictEqual(cursor, Option.some(String(second + 1)))
      yield* Scope.close(scope, Exit.void)

      // A new host with the same state asks for what comes after the last processed update.
      const fake2 = yield* Fake.make({ token: fake.token })
      yield* Harness.start({ fake: fake2, webhook: false, store: storeLayer, options: polling })
      const resumed = yield* fake2.waitFor("getUpdates", 1)
      assert.strictEqual(resumed[0]!.params.offset, second + 1)
      // Redelivered updates (same ids) are not processed again.
      fake2.enqueueUpdate(message(2, "two", {}, second))
      fake2.enqueueUpdate(message(3, "three", {}, second + 5))
      yield* fake2.waitFor("sendMessage", 1)
      yield* settle
      assert.deepStrictEqual(sentTexts(fake2), ["echo: three (history 0)"])
    }))

  it.scoped("takes no new updates once shutdown starts; the stored offset keeps them for the next start", () =>
    Effect.gen(function*() {
      const store = yield* StateStore.makeMemory
      const storeLayer = Layer.succeed(StateStore.StateStore, store)
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const fake = yield* Fake.make()
      const scope = yield* Scope.make()
      yield* Harness.start({
        fake,
        webhook: false,
        store: storeLayer,
        options: { pollingTimeoutSeconds: 5 },
        agent: (turns) =>
          Agent.make({
            name: "slow",
            run: (turn) =>
              Effect.gen(function*() {
                turns.push(turn)
                yield* Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(gate))
                return { messages: [assistantMessage("done")] }
              })
          })
      }).pipe(Scope.extend(scope))
      const taken = fake.enqueueUpdate(message(51, "before"))
      yield* Deferred.await(started)
      // The running turn holds shutdown in its grace; the poll held open meanwhile is abandoned at once.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* fake.waitUntil(() => !fake.polling())
      const polls = fake.callsOf("getUpdates").length
      const late = fake.enqueueUpdate(message(52, "during the grace"))
      yield* settle
      assert.strictEqual(fake.callsOf("getUpdates").length, polls)
      // The turn taken before shutdown finishes in the grace and is answered.
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      assert.deepStrictEqual(sentTexts(fake, 51), ["done"])
      assert.deepStrictEqual(sentTexts(fake, 52), [])
      assert.deepStrictEqual(yield* store.getCursor(`telegram:${fake.botId}:offset`), Option.some(String(taken + 1)))

      // The next start asks for what comes after the last update taken, and answers the late one.
      const next = yield* Harness.start({ fake, webhook: false, store: storeLayer, options: polling })
      yield* fake.waitFor("sendMessage", 2)
      assert.strictEqual(fake.callsOf("getUpdates")[polls]!.params.offset, taken + 1)
      assert.isAbove(late, taken)
      assert.deepStrictEqual(sentTexts(fake, 52), ["echo: during the grace (history 0)"])
      assert.strictEqual(next.turns.length, 1)
    }))

  it.scoped("backs off exponentially on getUpdates errors", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.fail("getUpdates", { error_code: 502, description: "Bad Gateway", times: 2 })
      const h = yield* Harness.start({ fake, webhook: false, options: polling })
      yield* fake.waitFor("getUpdates", 1)
      yield* settle
      assert.strictEqual(fake.callsOf("getUpdates").length, 1)
      yield* TestClock.adjust("1 second")
      yield* fake.waitFor("getUpdates", 2)
      yield* settle
      assert.strictEqual(fake.callsOf("getUpdates").length, 2)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(fake.callsOf("getUpdates").length, 2)
      yield* TestClock.adjust("1 second")
      yield* fake.waitFor("getUpdates", 3)
      fake.enqueueUpdate(message(5, "after the storm"))
      yield* fake.waitFor("sendMessage", 1)
      assert.deepStrictEqual(sentTexts(h.fake, 5), ["echo: after the storm (history 0)"])
    }))

  it.scoped("runs one poller per token: a second host gets 409 and stays idle", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make({ maxHoldMillis: 5000 })
      yield* Harness.start({ fake, webhook: false, options: { pollingTimeoutSeconds: 5 } })
      yield* fake.waitFor("getUpdates", 1)
      yield* settle
      yield* Harness.start({ fake, webhook: false, options: { pollingTimeoutSeconds: 5 } })
      yield* fake.waitFor("getUpdates", 2)
      assert.strictEqual(fake.conflicts(), 1)
      yield* TestClock.adjust("10 minutes")
      yield* settle
      // Only the first host keeps polling (it re-polls as its own requests time out); the second never retried.
      assert.strictEqual(fake.conflicts(), 1)
      // Each host has its own state: had both polled, the update would be answered twice.
      fake.enqueueUpdate(message(6, "who answers?"))
      yield* fake.waitFor("sendMessage", 1)
      yield* settle
      assert.deepStrictEqual(sentTexts(fake, 6), ["echo: who answers? (history 0)"])
    }))
})

describe("Telegram end to end", () => {
  it.live("the real server: a webhook update in, a sendMessage out", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const server = yield* ServerProcess.start({
        TELEGRAM_BOT_TOKEN: fake.token,
        TELEGRAM_API_BASE: fake.url,
        TELEGRAM_WEBHOOK_URL: "https://bot.example.test/telegram/webhook",
        TELEGRAM_SECRET_TOKEN: Harness.SECRET,
        TELEGRAM_STREAM: "false"
      })
      const rejected = yield* post(`${server.url}/telegram/webhook`, message(77, "hi"), "wrong")
      assert.strictEqual(rejected.status, 401)
      const res = yield* post(
        `${server.url}/telegram/webhook`,
        { ...message(77, "hello from e2e"), update_id: 1 },
        Harness.SECRET
      )
      assert.strictEqual(res.status, 200)
      const sent = yield* fake.waitFor("sendMessage", 1, 30_000)
      assert.strictEqual(sent[0]!.params.chat_id, 77)
      assert.include(String(sent[0]!.params.text), "hello from e2e")
      assert.strictEqual(fake.callsOf("setWebhook").length, 1)
      assert.notInclude(server.output(), fake.token)
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
