/**
 * The Activity channel's replies: conversation kinds (mentions, welcome, invokes, card actions), 429 retried after
 * its Retry-After, Teams 1:1 streaming (sequence, cadence, final, refusal fallback), the typing indicator's delay.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Queue, Stream, TestClock } from "effect"
import * as Agent from "../src/core/Agent.js"
import { assistantMessage } from "../src/domain/Message.js"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"

const atPlausibleTime = TestClock.setTime(1_780_000_000_000)

const messagesSent = (fake: Fake.FakeBotFramework) => fake.sent().filter((c) => c.body.type === "message")

const streamInfoOf = (body: Record<string, unknown>) =>
  (body.entities as Array<Record<string, unknown>> | undefined)?.find((e) => e.type === "streaminfo")

describe("Activity channel: replies", () => {
  it.scoped("group mentions are stripped; welcome, feedback, card actions; one connector token", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const h = yield* Harness.start()
      const bot = { id: `28:${Fake.APP_ID}`, name: "Bot" }
      const group = { id: "19:group@thread.v2", conversationType: "groupChat", isGroup: true }
      const mention = yield* h.send(Fake.message(h.fake, "<at>Bot</at> what time is it?", {
        conversation: group,
        entities: [{ type: "mention", text: "<at>Bot</at>", mentioned: bot }]
      }))
      assert.strictEqual(mention.status, 202)
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 1)
      assert.strictEqual(messagesSent(h.fake)[0]!.body.text, "echo: what time is it? (history 0)")
      assert.strictEqual(messagesSent(h.fake)[0]!.conversationId, "19:group@thread.v2")
      assert.strictEqual(h.turns[0]!.sessionId, "activity:19:group@thread.v2")

      // Someone adds the bot: a welcome, no turn.
      const update = yield* h.send({
        ...Fake.message(h.fake, ""),
        type: "conversationUpdate",
        text: undefined,
        membersAdded: [bot, { id: "29:user-2" }]
      })
      assert.strictEqual(update.status, 202)
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 2)
      assert.include(String(messagesSent(h.fake)[1]!.body.text), "Hi!")
      // Typing is ignored.
      assert.strictEqual((yield* h.send({ ...Fake.message(h.fake, ""), type: "typing" })).status, 202)

      // Teams feedback is an invoke answered in place.
      const feedback = yield* h.send({
        ...Fake.message(h.fake, ""),
        type: "invoke",
        name: "message/submitAction",
        value: { actionName: "feedback", actionValue: { reaction: "like", feedback: "{}" } }
      })
      assert.strictEqual(feedback.status, 200)
      assert.deepStrictEqual(JSON.parse(feedback.body), {})
      // An Action.Execute: the invoke response at once, the data to the agent as JSON.
      const action = yield* h.send({
        ...Fake.message(h.fake, ""),
        type: "invoke",
        name: "adaptiveCard/action",
        value: { action: { type: "Action.Execute", verb: "pick", data: { choice: "blue" } } }
      })
      assert.strictEqual(action.status, 200)
      assert.strictEqual(JSON.parse(action.body).statusCode, 200)
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 3)
      assert.strictEqual(messagesSent(h.fake)[2]!.body.text, "echo: {\"choice\":\"blue\"} (history 0)")
      assert.strictEqual(h.turns.length, 2)
      // One token for everything: fetched at startup, cached.
      assert.strictEqual(h.fake.tokensIssued(), 1)
    }))

  it.scoped("a 429 is retried after its Retry-After", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const h = yield* Harness.start()
      h.fake.fail({ status: 429, retryAfter: "7", code: "TooManyRequests", when: (c) => c.body.type === "message" })
      yield* h.send(Fake.message(h.fake, "busy?"))
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 1)
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual(messagesSent(h.fake).length, 1)
      yield* TestClock.adjust("1 second")
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 2)
      assert.strictEqual(messagesSent(h.fake)[1]!.body.text, "echo: busy? (history 0)")
    }))

  const streamingHarness = Effect.gen(function*() {
    const deltas = yield* Queue.unbounded<string>()
    const h = yield* Harness.start({
      options: { stream: true, streamInformative: "Thinking…" },
      agent: (turns) =>
        Agent.make({
          name: "streamer",
          stream: (turn) => {
            turns.push(turn)
            return Stream.fromQueue(deltas).pipe(
              Stream.takeWhile((delta) => delta !== "<end>"),
              Stream.map((delta) => ({
                role: "assistant" as const,
                contents: [{ _tag: "text" as const, text: delta }]
              }))
            )
          }
        })
    })
    return { h, deltas }
  })

  it.scoped("Teams 1:1 streaming: informative, growing chunks at the cadence, then the final message", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const { deltas, h } = yield* streamingHarness
      yield* h.send(Fake.message(h.fake, "tell me"))
      yield* h.fake.waitForSent(1)
      const informative = h.fake.sent()[0]!
      assert.strictEqual(informative.body.type, "typing")
      assert.strictEqual(informative.body.text, "Thinking…")
      assert.deepStrictEqual(streamInfoOf(informative.body), {
        type: "streaminfo",
        streamType: "informative",
        streamSequence: 1
      })
      yield* deltas.offer("Hel")
      yield* h.fake.waitForSent(2)
      const streamId = "activity-1"
      assert.deepStrictEqual(h.fake.sent()[1]!.body.text, "Hel")
      assert.deepStrictEqual(streamInfoOf(h.fake.sent()[1]!.body), {
        type: "streaminfo",
        streamType: "streaming",
        streamId,
        streamSequence: 2
      })
      // Within the interval nothing more is sent; after it, the whole text so far.
      yield* deltas.offer("lo, ")
      yield* deltas.offer("world")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(h.fake.sent().length, 2)
      yield* TestClock.adjust("500 millis")
      yield* h.fake.waitForSent(3)
      assert.strictEqual(h.fake.sent()[2]!.body.text, "Hello, world")
      assert.strictEqual(streamInfoOf(h.fake.sent()[2]!.body)!.streamSequence, 3)
      yield* deltas.offer("<end>")
      yield* h.fake.waitForSent(4)
      const final = h.fake.sent()[3]!
      assert.strictEqual(final.body.type, "message")
      assert.strictEqual(final.body.text, "Hello, world")
      assert.deepStrictEqual(streamInfoOf(final.body), { type: "streaminfo", streamType: "final", streamId })
      assert.deepStrictEqual(final.body.channelData, { feedbackLoopEnabled: true })
      // Sequence numbers count up by one; every request waited for the one before (the fake answers in order).
      const sequences = h.fake.sent().slice(0, 3).map((c) => streamInfoOf(c.body)!.streamSequence)
      assert.deepStrictEqual(sequences, [1, 2, 3])
    }))

  it.scoped("a conversation that refuses streaming gets one plain message", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const { deltas, h } = yield* streamingHarness
      h.fake.fail({ status: 403, code: "ContentStreamNotAllowed", when: (c) => c.body.type === "typing" })
      yield* h.send(Fake.message(h.fake, "tell me"))
      yield* h.fake.waitForSent(1)
      yield* deltas.offer("Hello")
      yield* deltas.offer("<end>")
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 1)
      // Only the refused informative update; no chunks after it, and the reply has no stream info.
      assert.strictEqual(h.fake.sent().length, 2)
      const reply = messagesSent(h.fake)[0]!
      assert.strictEqual(reply.body.text, "Hello")
      assert.isUndefined(streamInfoOf(reply.body))
    }))

  it.scoped("the typing indicator starts after typingDelay; a quick turn sends none; zero sends it at once", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const typingSent = (fake: Fake.FakeBotFramework) => fake.sent().filter((c) => c.body.type === "typing")
      const started = yield* Queue.unbounded<void>()
      const gate = yield* Deferred.make<void>()
      const slowAgent = () =>
        Agent.make({
          name: "slow",
          run: () =>
            Effect.zipRight(
              Effect.zipRight(Queue.offer(started, undefined), Deferred.await(gate)),
              Effect.succeed({ messages: [assistantMessage("done at last")] })
            )
        })
      const h = yield* Harness.start({ agent: slowAgent })
      assert.strictEqual((yield* h.send(Fake.message(h.fake, "take your time"))).status, 202)
      yield* Queue.take(started)
      // Not before 500 ms (the default) of the turn; then one, to the conversation.
      yield* TestClock.adjust("499 millis")
      assert.strictEqual(typingSent(h.fake).length, 0)
      yield* TestClock.adjust("1 millis")
      yield* h.fake.waitUntil(() => typingSent(h.fake).length === 1)
      assert.strictEqual(messagesSent(h.fake).length, 0)
      yield* Deferred.succeed(gate, undefined)
      yield* h.fake.waitUntil(() => messagesSent(h.fake).length === 1)
      assert.strictEqual(messagesSent(h.fake)[0]!.body.text, "done at last")
      assert.strictEqual(typingSent(h.fake)[0]!.conversationId, messagesSent(h.fake)[0]!.conversationId)

      // A turn of 200 ms (test clock) sends its reply alone, and nothing after it.
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
      yield* quick.send(Fake.message(quick.fake, "quick"))
      yield* Queue.take(began)
      yield* TestClock.adjust("200 millis")
      yield* quick.fake.waitUntil(() => messagesSent(quick.fake).length === 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(typingSent(quick.fake).length, 0)

      const eagerGate = yield* Deferred.make<void>()
      const eager = yield* Harness.start({
        options: { typingDelay: 0 },
        agent: () =>
          Agent.make({
            name: "slow",
            run: () => Effect.as(Deferred.await(eagerGate), { messages: [assistantMessage("done")] })
          })
      })
      yield* eager.send(Fake.message(eager.fake, "now"))
      yield* eager.fake.waitUntil(() => typingSent(eager.fake).length === 1)
      yield* Deferred.succeed(eagerGate, undefined)
      yield* eager.fake.waitUntil(() => messagesSent(eager.fake).length === 1)
    }))
})
