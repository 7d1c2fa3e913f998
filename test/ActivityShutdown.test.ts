/**
 * Shutdown and replies in flight: a turn whose reply is still being sent to the connector when the host shuts
 * down is finished (the send completes and the channel's bookkeeping after it runs) before the host stops; a send
 * that never completes holds shutdown only for the channels' reply grace.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Scope, TestClock } from "effect"
import * as StateStore from "../src/state/StateStore.js"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"

// Real time for HTTP round trips while the TestClock stands still.
const settle = (millis = 300) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, millis)))

const isReply = (call: Fake.ConnectorCall) => call.body.type === "message"

const start = Effect.gen(function*() {
  yield* TestClock.setTime(1_780_000_000_000)
  const store = yield* StateStore.makeMemory
  const fake = yield* Fake.make()
  const held = fake.hold(isReply)
  const scope = yield* Scope.make()
  const h = yield* Harness.start({
    fake,
    store: Layer.succeed(StateStore.StateStore, store),
    options: { stream: false }
  }).pipe(Scope.extend(scope))
  yield* h.send(Fake.message(fake, "answer me"))
  // The turn is done and its reply is at the connector, which has not answered yet.
  yield* fake.waitUntil(() => fake.sent().some(isReply))
  const reply = fake.sent().find(isReply)!
  // What the channel writes once the reply is sent: which response the message answers (for its feedback).
  const bookkeeping = Effect.suspend(() =>
    reply.answer?.id === undefined ?
      Effect.succeed(Option.none<string>()) :
      store.getCursor(`activity:reply:a:conv-1:${reply.answer.id}`)
  )
  return { h, fake, held, scope, reply, bookkeeping }
})

describe("Activity channel: shutdown", () => {
  it.scoped("waits for a reply still being sent, then stops", () =>
    Effect.gen(function*() {
      const { bookkeeping, h, held, reply, scope } = yield* start
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle()
      // Shutdown waits for the send.
      assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
      held.release()
      yield* Fiber.join(closing)
      assert.strictEqual(reply.answer?.status, 200)
      assert.strictEqual(reply.body.text, "echo: answer me (history 0)")
      // The channel saw the send succeed and went on: the reply is mapped to its turn's response.
      assert.deepStrictEqual(yield* bookkeeping, Option.some(h.turns[0]!.context.responseId!))
    }))

  it.scoped("a send that never completes holds shutdown only for the reply grace", () =>
    Effect.gen(function*() {
      const { bookkeeping, held, scope } = yield* start
      // Wall-clock time (the TestClock stands still), from the process's monotonic clock.
      const wallMillis = Effect.sync(() => Number(process.hrtime.bigint() / 1_000_000n))
      const startedAt = yield* wallMillis
      yield* Scope.close(scope, Exit.void)
      const waited = (yield* wallMillis) - startedAt
      // The grace is 3 s of wall-clock time (ChatQueue); the send was abandoned, so nothing came after it.
      assert.isAtLeast(waited, 2_500)
      assert.isBelow(waited, 15_000)
      held.release()
      assert.isTrue(Option.isNone(yield* bookkeeping))
    }))
})
