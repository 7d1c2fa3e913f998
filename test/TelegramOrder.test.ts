import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import * as Agent from "../src/core/Agent.js"
import { textOf } from "../src/domain/Content.js"
import { assistantMessage } from "../src/domain/Message.js"
import * as Fake from "./fake/FakeTelegram.js"
import * as Harness from "./fake/TelegramHarness.js"
import { message, sentTexts, updateId } from "./fake/TelegramHarness.js"

/** Echoes like the harness's agent; the turn for `hold` waits for `gate`. */
const gatedEcho =
  (gate: Deferred.Deferred<void>, started: Deferred.Deferred<void>, hold: string) => (turns: Array<any>) =>
    Agent.make({
      name: "gated-echo",
      run: (turn) =>
        Effect.gen(function*() {
          turns.push(turn)
          const text = textOf(turn.input[turn.input.length - 1]!.contents)
          if (text === hold) yield* Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(gate))
          return { messages: [assistantMessage(`echo: ${text} (history ${turn.history.length})`)] }
        })
    })

const reset = "Started a new conversation. Earlier messages are forgotten."

describe("Telegram per-chat order", () => {
  for (const transport of ["webhook", "polling"] as const) {
    it.scoped(`a burst with /new in one chat is answered in order, the rest in the new session (${transport})`, () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        const fake = yield* Fake.make()
        const h = yield* Harness.start({
          fake,
          webhook: transport === "webhook",
          options: { pollingTimeoutSeconds: 1 },
          agent: gatedEcho(gate, started, "m1")
        })
        const texts = ["m1", "m2", "/new", "m3", "m4"]
        if (transport === "webhook") {
          // Each update is acknowledged before the next is posted, while m1's turn is still running.
          yield* h.post(message(31, "m1", {}, updateId()))
          yield* Deferred.await(started)
          for (const text of texts.slice(1)) {
            const res = yield* h.post(message(31, text, {}, updateId()))
            assert.strictEqual(res.status, 200)
          }
        } else {
          // One getUpdates batch.
          for (const text of texts) fake.enqueueUpdate(message(31, text))
          yield* Deferred.await(started)
        }
        // Nothing overtook m1: not the next message, not the reset.
        assert.deepStrictEqual(sentTexts(fake, 31), [])
        yield* Deferred.succeed(gate, undefined)
        yield* fake.waitFor("sendMessage", 5)
        assert.deepStrictEqual(sentTexts(fake, 31), [
          "echo: m1 (history 0)",
          "echo: m2 (history 2)",
          reset,
          "echo: m3 (history 0)",
          "echo: m4 (history 2)"
        ])
        const sessions = h.turns.map((t) => t.sessionId)
        assert.deepStrictEqual(sessions.slice(0, 2), ["telegram:31", "telegram:31"])
        assert.strictEqual(sessions[2], sessions[3])
        assert.isTrue(String(sessions[2]).startsWith("telegram:31#"))
      }))
  }

  it.scoped("a chat with 16 updates waiting gets 429 for the next; delivered again, it is answered in order", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const h = yield* Harness.start({ agent: gatedEcho(gate, started, "m0") })
      yield* h.post(message(32, "m0", {}, updateId()))
      yield* Deferred.await(started)
      for (let i = 1; i <= 16; i++) {
        assert.strictEqual((yield* h.post(message(32, `m${i}`, {}, updateId()))).status, 200)
      }
      // The 17th waiting update is refused with a retry Telegram honours (it redelivers, holding the chat's
      // later updates meanwhile); nothing about it is kept, so the redelivery is not taken for a duplicate.
      const seventeenth = message(32, "m17", {}, updateId())
      const refused = yield* h.post(seventeenth)
      assert.strictEqual(refused.status, 429)
      assert.strictEqual(refused.retryAfter, "1")
      const error = JSON.parse(refused.body).error
      assert.strictEqual(error.type, "MailboxFull")
      assert.include(error.message, "telegram:32 already has 16 update(s) waiting")
      // Another chat is not affected.
      yield* h.post(message(33, "elsewhere", {}, updateId()))
      yield* h.fake.waitFor("sendMessage", 1)
      assert.deepStrictEqual(sentTexts(h.fake, 33), ["echo: elsewhere (history 0)"])
      assert.deepStrictEqual(sentTexts(h.fake, 32), [])
      yield* Deferred.succeed(gate, undefined)
      yield* h.fake.waitFor("sendMessage", 1 + 17)
      assert.strictEqual((yield* h.post(seventeenth)).status, 200)
      yield* h.fake.waitFor("sendMessage", 1 + 18)
      assert.deepStrictEqual(
        sentTexts(h.fake, 32),
        Array.from({ length: 18 }, (_, i) => `echo: m${i} (history ${2 * i})`)
      )
    }))

  it.scoped("polling: a chat with 16 updates waiting holds the poller back; nothing is dropped", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const fake = yield* Fake.make()
      const h = yield* Harness.start({
        fake,
        webhook: false,
        options: { pollingTimeoutSeconds: 1 },
        agent: gatedEcho(gate, started, "m0")
      })
      for (let i = 0; i <= 18; i++) fake.enqueueUpdate(message(34, `m${i}`))
      fake.enqueueUpdate(message(35, "behind"))
      yield* Deferred.await(started)
      // m0 runs, m1..m16 wait, m17 is refused: the batch stops there and the poller waits for room before asking
      // again from m17, so the later chat waits too (polling keeps Telegram's order; nothing is dropped).
      yield* Deferred.succeed(gate, undefined)
      yield* fake.waitFor("sendMessage", 20, 15_000)
      assert.deepStrictEqual(
        sentTexts(fake, 34),
        Array.from({ length: 19 }, (_, i) => `echo: m${i} (history ${2 * i})`)
      )
      assert.deepStrictEqual(sentTexts(fake, 35), ["echo: behind (history 0)"])
      const replies = fake.callsOf("sendMessage").map((c) => c.params.text)
      assert.isAbove(replies.indexOf("echo: behind (history 0)"), replies.indexOf("echo: m0 (history 0)"))
      assert.strictEqual(h.turns.length, 20)
    }))
})
