/**
 * `Sse.withHeartbeat`, on the TestClock: a comment after an interval without frames, none while frames flow,
 * frames in order, and nothing left running once the stream ends, fails or is abandoned.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Mailbox, Stream, Supervisor, TestClock } from "effect"
import * as Sse from "../src/http/Sse.js"

/** Runs `effect` with every fiber it forks tracked; then asserts none of them is still alive. */
const leavesNoFiber = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const supervisor = yield* Supervisor.track
    const result = yield* Effect.supervised(effect, supervisor)
    yield* until(() => true)
    const alive = (yield* supervisor.value).filter((fiber) => fiber.unsafePoll() === null)
    assert.strictEqual(alive.length, 0, "fibers left running")
    return result
  })

const until = (done: () => boolean) =>
  Effect.gen(function*() {
    while (!done()) yield* Effect.yieldNow()
  })

describe("Sse.withHeartbeat", () => {
  it.effect("a comment after a silent interval, none while frames flow; ends with its source", () =>
    Effect.gen(function*() {
      const source = yield* Mailbox.make<string>()
      const seen: Array<string> = []
      const fiber = yield* Sse.withHeartbeat(Mailbox.toStream(source), "10 seconds").pipe(
        Stream.runForEach((frame) => Effect.sync(() => seen.push(frame))),
        leavesNoFiber,
        Effect.fork
      )
      yield* TestClock.adjust("9 seconds")
      assert.deepStrictEqual(seen, [])
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(seen, [Sse.HEARTBEAT])
      // Frames ready together are emitted together.
      yield* source.offerAll(["a", "b"])
      yield* until(() => seen.length === 2)
      yield* TestClock.adjust("10 seconds")
      // Something was sent in that interval: no comment.
      assert.deepStrictEqual(seen, [Sse.HEARTBEAT, "ab"])
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, [Sse.HEARTBEAT, "ab", Sse.HEARTBEAT])
      yield* source.offer("c")
      yield* source.end
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(seen, [Sse.HEARTBEAT, "ab", Sse.HEARTBEAT, "c"])
    }))

  it.effect("a failing source fails the stream; an abandoned one is stopped", () =>
    Effect.gen(function*() {
      const failed = yield* Effect.exit(
        leavesNoFiber(Stream.runCollect(Sse.withHeartbeat(Stream.fail("boom"), "10 seconds")))
      )
      assert.deepStrictEqual(failed, Exit.fail("boom"))
      let stopped = false
      const endless = Stream.repeatValue("x").pipe(Stream.ensuring(Effect.sync(() => (stopped = true))))
      const taken = yield* leavesNoFiber(Stream.runCollect(Stream.take(Sse.withHeartbeat(endless, "10 seconds"), 3)))
      assert.strictEqual(taken.length, 3)
      assert.isTrue(stopped)
    }))
})
