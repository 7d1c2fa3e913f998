import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Queue, TestClock } from "effect"
import * as Agent from "../src/core/Agent.js"
import { textOf } from "../src/domain/Content.js"
import { AccessDenied, AgentError, LinkRequiredError } from "../src/domain/Errors.js"
import { assistantMessage } from "../src/domain/Message.js"
import * as Harness from "./fake/TelegramHarness.js"
import { message, sentTexts, updateId } from "./fake/TelegramHarness.js"

describe("Telegram webhook", () => {
  it.scoped("registers the webhook and commands, checks the secret, and answers", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start({
        options: {
          commands: [{ name: "ping", description: "Say pong", handle: (c) => c.reply(`pong ${c.args}`) }]
        }
      })
      const setWebhook = h.fake.callsOf("setWebhook")
      assert.strictEqual(setWebhook.length, 1)
      assert.deepStrictEqual(setWebhook[0]!.params.allowed_updates, ["message", "edited_message", "callback_query"])
      assert.strictEqual(setWebhook[0]!.params.secret_token, Harness.SECRET)
      assert.strictEqual(setWebhook[0]!.params.url, "https://bot.example.test/telegram/webhook")
      const commands = h.fake.callsOf("setMyCommands")[0]!.params.commands as Array<{ command: string }>
      assert.deepStrictEqual(commands.map((c) => c.command), ["ping", "start", "new", "help"])
      assert.strictEqual(h.fake.callsOf("getUpdates").length, 0)

      const wrong = yield* h.post(message(1, "hi", {}, updateId()), "nope")
      assert.strictEqual(wrong.status, 401)
      assert.strictEqual(JSON.parse(wrong.body).error.type, "unauthorized")
      const missing = yield* h.post(message(1, "hi", {}, updateId()), null)
      assert.strictEqual(missing.status, 401)
      assert.strictEqual(h.turns.length, 0)

      const ok = yield* h.post(message(1, "hello", {}, updateId()))
      assert.strictEqual(ok.status, 200)
      assert.deepStrictEqual(JSON.parse(ok.body), { ok: true })
      yield* h.fake.waitFor("sendMessage")
      assert.deepStrictEqual(sentTexts(h.fake, 1), ["echo: hello (history 0)"])
    }))

  it.scoped("rejects bad JSON, non-objects and non-updates with 400", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start()
      const badJson = yield* h.post("{nope")
      assert.strictEqual(badJson.status, 400)
      assert.strictEqual(JSON.parse(badJson.body).error.type, "invalid_json")
      for (const body of ["[1,2]", "42", "null", "\"text\""]) {
        const res = yield* h.post(body)
        assert.strictEqual(res.status, 400, body)
        assert.strictEqual(JSON.parse(res.body).error.type, "invalid_update")
      }
      const noId = yield* h.post({ message: { text: "x" } })
      assert.strictEqual(noId.status, 400)
      assert.include(JSON.parse(noId.body).error.message, "update_id")
      // Update kinds the channel does not handle are acknowledged and ignored.
      const other = yield* h.post({ update_id: updateId(), my_chat_member: { chat: { id: 1 } } })
      assert.strictEqual(other.status, 200)
      const ok = yield* h.post(message(2, "still fine", {}, updateId()))
      assert.strictEqual(ok.status, 200)
      yield* h.fake.waitFor("sendMessage")
      assert.strictEqual(h.turns.length, 1)
    }))

  it.scoped("processes a duplicated update once", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start()
      const update = message(5, "once", {}, updateId())
      const results = yield* Effect.all([h.post(update), h.post(update), h.post(update)], { concurrency: 3 })
      for (const r of results) assert.strictEqual(r.status, 200)
      yield* h.fake.waitFor("sendMessage")
      const again = yield* h.post(update)
      assert.strictEqual(again.status, 200)
      yield* h.post(message(5, "next", {}, updateId()))
      yield* h.fake.waitFor("sendMessage", 2)
      assert.deepStrictEqual(sentTexts(h.fake, 5), ["echo: once (history 0)", "echo: next (history 2)"])
      assert.strictEqual(h.turns.length, 2)
    }))

  it.scoped("acknowledges before the agent finishes", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const h = yield* Harness.start({
        agent: () =>
          Agent.make({
            name: "slow",
            run: () =>
              Effect.zipRight(
                Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(gate)),
                Effect.succeed({ messages: [assistantMessage("done at last")] })
              )
          })
      })
      const ack = yield* h.post(message(9, "take your time", {}, updateId()))
      assert.strictEqual(ack.status, 200)
      yield* Deferred.await(started)
      // The typing indicator shows once the agent has worked for `typingDelay` (500 ms by default), not before.
      assert.strictEqual(h.fake.callsOf("sendChatAction").length, 0)
      yield* TestClock.adjust("499 millis")
      assert.strictEqual(h.fake.callsOf("sendChatAction").length, 0)
      yield* TestClock.adjust("1 millis")
      const typing = yield* h.fake.waitFor("sendChatAction")
      assert.deepStrictEqual(typing[0]!.params, { chat_id: 9, action: "typing" })
      assert.strictEqual(h.fake.callsOf("sendMessage").length, 0)
      yield* Deferred.succeed(gate, undefined)
      yield* h.fake.waitFor("sendMessage")
      assert.deepStrictEqual(sentTexts(h.fake, 9), ["done at last"])
    }))

  it.scoped("a turn answered within the typing delay sends no typing indicator; a zero delay sends it at once", () =>
    Effect.gen(function*() {
      // An agent that takes 200 ms (of the test clock): under the 500 ms default.
      const began = yield* Queue.unbounded<void>()
      const quick = yield* Harness.start({
        agent: () =>
          Agent.make({
            name: "quick",
            run: () =>
              Effect.zipRight(
                Queue.offer(began, undefined),
                Effect.as(Effect.sleep("200 millis"), { messages: [assistantMessage("quick enough")] })
              )
          })
      })
      yield* quick.post(message(11, "quick", {}, updateId()))
      yield* Queue.take(began)
      yield* TestClock.adjust("200 millis")
      yield* quick.fake.waitFor("sendMessage")
      // The indicator's fiber ended with the turn: past the delay, still none.
      yield* TestClock.adjust("1 second")
      yield* quick.post(message(11, "again", {}, updateId()))
      yield* Queue.take(began)
      yield* TestClock.adjust("200 millis")
      yield* quick.fake.waitFor("sendMessage", 2)
      assert.strictEqual(quick.fake.callsOf("sendChatAction").length, 0)

      const gate = yield* Deferred.make<void>()
      const eager = yield* Harness.start({
        options: { typingDelay: 0 },
        agent: () =>
          Agent.make({
            name: "slow",
            run: () => Effect.as(Deferred.await(gate), { messages: [assistantMessage("done")] })
          })
      })
      yield* eager.post(message(12, "now", {}, updateId()))
      const typing = yield* eager.fake.waitFor("sendChatAction")
      assert.deepStrictEqual(typing[0]!.params, { chat_id: 12, action: "typing" })
      yield* Deferred.succeed(gate, undefined)
      yield* eager.fake.waitFor("sendMessage")
    }))

  it.scoped("keeps each chat in order while chats run in parallel", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const order: Array<string> = []
      const h = yield* Harness.start({
        agent: () =>
          Agent.make({
            name: "gated",
            run: (turn) =>
              Effect.gen(function*() {
                const text = textOf(turn.input[turn.input.length - 1]!.contents)
                order.push(`start ${text}`)
                if (text === "a1") yield* Deferred.await(gate)
                order.push(`end ${text}`)
                return { messages: [assistantMessage(`re ${text}`)] }
              })
          })
      })
      yield* h.post(message(100, "a1", {}, updateId()))
      yield* h.post(message(100, "a2", {}, updateId()))
      yield* h.post(message(200, "b1", {}, updateId()))
      // Chat 200 is answered while chat 100 waits on its first message.
      yield* h.fake.waitFor("sendMessage")
      assert.deepStrictEqual(sentTexts(h.fake), ["re b1"])
      assert.notInclude(order, "start a2")
      yield* Deferred.succeed(gate, undefined)
      yield* h.fake.waitFor("sendMessage", 3)
      assert.deepStrictEqual(sentTexts(h.fake, 100), ["re a1", "re a2"])
      assert.isBelow(order.indexOf("end a1"), order.indexOf("start a2"))
    }))

  it.scoped("handles /start, /help, /new, custom and unknown commands", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start({
        options: {
          commands: [{ name: "ping", description: "Say pong", handle: (c) => c.reply(`pong ${c.args}`) }]
        }
      })
      const send = (text: string) => h.post(message(7, text, {}, updateId()))
      yield* send("/start")
      yield* h.fake.waitFor("sendMessage", 1)
      assert.include(sentTexts(h.fake, 7)[0]!, "/new")
      yield* send("/help@test_bot")
      yield* h.fake.waitFor("sendMessage", 2)
      assert.include(sentTexts(h.fake, 7)[1]!, "/ping - Say pong")
      yield* send("/ping@Test_Bot loud")
      yield* h.fake.waitFor("sendMessage", 3)
      assert.strictEqual(sentTexts(h.fake, 7)[2], "pong loud")
      yield* send("/ping@other_bot")
      yield* send("hello")
      yield* h.fake.waitFor("sendMessage", 4)
      assert.strictEqual(sentTexts(h.fake, 7)[3], "echo: hello (history 0)")
      yield* send("again")
      yield* h.fake.waitFor("sendMessage", 5)
      assert.strictEqual(sentTexts(h.fake, 7)[4], "echo: again (history 2)")
      yield* send("/new")
      yield* h.fake.waitFor("sendMessage", 6)
      assert.include(sentTexts(h.fake, 7)[5]!, "new conversation")
      yield* send("/unknown thing")
      yield* h.fake.waitFor("sendMessage", 7)
      assert.strictEqual(sentTexts(h.fake, 7)[6], "echo: /unknown thing (history 0)")
      // Commands never reach the agent; the other bot's command was ignored.
      assert.deepStrictEqual(h.turns.map((t) => textOf(t.input[0]!.contents)), ["hello", "again", "/unknown thing"])
      assert.strictEqual(h.fake.callsOf("sendMessage").length, 7)
    }))

  it.scoped("answers callback queries and sends their data to the agent", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start()
      const res = yield* h.post({
        update_id: updateId(),
        callback_query: {
          id: "cbq-1",
          from: { id: 44, is_bot: false, first_name: "Bo", username: "bo" },
          message: { message_id: 3, date: 1, chat: { id: 44, type: "private" } },
          data: "choice:blue"
        }
      })
      assert.strictEqual(res.status, 200)
      yield* h.fake.waitFor("sendMessage")
      assert.strictEqual(h.fake.callsOf("answerCallbackQuery")[0]!.params.callback_query_id, "cbq-1")
      assert.deepStrictEqual(sentTexts(h.fake, 44), ["echo: choice:blue (history 0)"])
      const turn = h.turns[0]!
      assert.strictEqual(turn.sessionId, "telegram:44")
      assert.strictEqual(turn.context.identity?.nativeId, "44")
      assert.deepStrictEqual(turn.context.identity?.attributes, { user_id: 44, username: "bo" })
    }))

  it.scoped("answers in groups only when mentioned or replied to; topics are their own sessions", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start()
      const group = { id: -100123, type: "supergroup", title: "Team", is_forum: true }
      const from = { id: 501, is_bot: false, first_name: "Cy", username: "cy" }
      yield* h.post(message(0, "just chatting", { chat: group, from }, updateId()))
      yield* h.post(
        message(0, "@test_bot what time is it?", {
          chat: group,
          from,
          entities: [{ type: "mention", offset: 0, length: 9 }]
        }, updateId())
      )
      yield* h.fake.waitFor("sendMessage", 1)
      assert.deepStrictEqual(sentTexts(h.fake), ["echo: what time is it? (history 0)"])
      assert.strictEqual(h.turns[0]!.sessionId, "telegram:-100123")
      assert.deepStrictEqual(h.turns[0]!.context.identity?.attributes, { user_id: 501, username: "cy" })
      yield* h.post(
        message(0, "and tomorrow?", {
          chat: group,
          from,
          reply_to_message: { message_id: 1, from: { id: h.fake.botId, is_bot: true, first_name: "Test Bot" } }
        }, updateId())
      )
      yield* h.fake.waitFor("sendMessage", 2)
      yield* h.post(
        message(
          0,
          "in a topic @test_bot",
          { chat: group, from, message_thread_id: 77, is_topic_message: true },
          updateId()
        )
      )
      yield* h.fake.waitFor("sendMessage", 3)
      const topicReply = h.fake.callsOf("sendMessage")[2]!
      assert.strictEqual(topicReply.params.message_thread_id, 77)
      assert.strictEqual(topicReply.params.text, "echo: in a topic (history 0)")
      assert.deepStrictEqual(h.turns.map((t) => t.sessionId), [
        "telegram:-100123",
        "telegram:-100123",
        "telegram:-100123:77"
      ])
      assert.strictEqual(h.turns.length, 3)
    }))

  it.scoped("replies with the refusal text, never the details, when a turn cannot run", () =>
    Effect.gen(function*() {
      const h = yield* Harness.start({
        authorizer: {
          validate: () => Effect.void,
          authorize: (request) => {
            const chat = request.identity?.nativeId
            if (chat === "66") {
              return Effect.fail(
                new AccessDenied({ reasonCode: "not_on_allowlist:66", message: "This bot is private." })
              )
            }
            if (chat === "67") {
              return Effect.fail(
                new LinkRequiredError({
                  challengeId: "ch_1",
                  url: "https://link.example.test/c/ch_1",
                  message: "Link your account first:"
                })
              )
            }
            return Effect.succeed(request)
          }
        },
        agent: (turns) =>
          Agent.make({
            name: "failing",
            run: (turn) =>
              Effect.suspend(() => {
                turns.push(turn)
                return Effect.fail(new AgentError({ message: "upstream said: secret internals", code: "x" }))
              })
          })
      })
      yield* h.post(message(66, "let me in", {}, updateId()))
      yield* h.post(message(67, "hello", {}, updateId()))
      yield* h.post(message(68, "boom", {}, updateId()))
      yield* h.fake.waitFor("sendMessage", 3)
      assert.deepStrictEqual(sentTexts(h.fake, 66), ["This bot is private."])
      // A sign-in challenge comes with its link as a button.
      assert.deepStrictEqual(sentTexts(h.fake, 67), ["Link your account first:"])
      const challenge = h.fake.callsOf("sendMessage").find((c) => Number(c.params.chat_id) === 67)!
      assert.deepStrictEqual(challenge.params.reply_markup, {
        inline_keyboard: [[{ text: "Sign in", url: "https://link.example.test/c/ch_1" }]]
      })
      assert.strictEqual(sentTexts(h.fake, 68).length, 1)
      assert.notInclude(sentTexts(h.fake, 68)[0]!, "secret internals")
      // Refused turns never reach the agent.
      assert.deepStrictEqual(h.turns.map((t) => t.sessionId), ["telegram:68"])
    }))
})
