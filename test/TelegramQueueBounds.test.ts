import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as ChatQueue from "../src/channels/shared/ChatQueue.js"
import * as Limiter from "../src/channels/shared/Limiter.js"

describe("ChatQueue bounds", () => {
  it.scoped("refuses past maxPending across chats (key-less work counts), and has room again when work ends", () =>
    Effect.gen(function*() {
      const queue = yield* ChatQueue.make({ maxWaiting: 4, maxPending: 3 })
      const gates = yield* Effect.all(Array.from({ length: 3 }, () => Deferred.make<void>()))
      const done: Array<string> = []
      const work = (name: string, gate: Deferred.Deferred<void>) =>
        Effect.zipRight(Deferred.await(gate), Effect.sync(() => void done.push(name)))
      assert.strictEqual(yield* queue.offer("a", work("a1", gates[0]!)), "queued")
      assert.strictEqual(yield* queue.offer("b", work("b1", gates[1]!)), "queued")
      assert.strictEqual(yield* queue.offer(undefined, work("none", gates[2]!)), "queued")
      // Three pending: another chat, the same chat and key-less work are all refused; nothing of them runs.
      assert.strictEqual(yield* queue.offer("c", work("c1", gates[0]!)), "full")
      assert.strictEqual(yield* queue.offer("a", work("a2", gates[0]!)), "full")
      assert.strictEqual(yield* queue.offer(undefined, work("none2", gates[0]!)), "full")
      const room = yield* Effect.fork(queue.awaitRoom("c"))
      yield* Effect.yieldNow()
      assert.isNull(room.unsafePoll())
      yield* Deferred.succeed(gates[1]!, undefined)
      yield* Fiber.join(room)
      assert.strictEqual(yield* queue.offer("c", Effect.sync(() => void done.push("c1"))), "queued")
      yield* Deferred.succeed(gates[0]!, undefined)
      yield* Deferred.succeed(gates[2]!, undefined)
      yield* Effect.repeat(Effect.sync(() => done.length), { until: (n) => n === 4 })
      assert.sameMembers(done, ["a1", "b1", "none", "c1"])
    }))

  it.scoped("a full chat is refused while others are not; awaitRoom waits for that chat's lane", () =>
    Effect.gen(function*() {
      const queue = yield* ChatQueue.make({ maxWaiting: 1, maxPending: 100 })
      const gate = yield* Deferred.make<void>()
      const order: Array<string> = []
      const step = (name: string) => Effect.sync(() => void order.push(name))
      assert.strictEqual(yield* queue.offer("a", Effect.zipRight(Deferred.await(gate), step("a1"))), "queued")
      assert.strictEqual(yield* queue.offer("a", step("a2")), "queued")
      assert.strictEqual(yield* queue.offer("a", step("a3")), "chat_full")
      assert.strictEqual(yield* queue.offer("b", step("b1")), "queued")
      const room = yield* Effect.fork(queue.awaitRoom("a"))
      yield* Effect.repeat(Effect.sync(() => order.length), { until: (n) => n === 1 })
      assert.isNull(room.unsafePoll())
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(room)
      assert.strictEqual(yield* queue.offer("a", step("a3")), "queued")
      yield* Effect.repeat(Effect.sync(() => order.length), { until: (n) => n === 4 })
      assert.deepStrictEqual(order.filter((n) => n.startsWith("a")), ["a1", "a2", "a3"])
    }))
})

describe("Limiter", () => {
  it.effect("runs at most max at once, the rest in arrival order", () =>
    Effect.gen(function*() {
      const limiter = yield* Limiter.make(2)
      const gates = yield* Effect.all(Array.from({ length: 5 }, () => Deferred.make<void>()))
      let running = 0
      let most = 0
      const started: Array<number> = []
      const fibers = yield* Effect.forEach(gates, (gate, i) =>
        Effect.fork(limiter.withPermit(Effect.gen(function*() {
          running++
          most = Math.max(most, running)
          started.push(i)
          yield* Deferred.await(gate)
          running--
        }))))
      yield* Effect.repeat(Effect.sync(() => started.length), { until: (n) => n === 2 })
      for (const gate of [...gates].reverse()) yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      assert.strictEqual(most, 2)
      assert.deepStrictEqual(started, [0, 1, 2, 3, 4])
    }))

  it.effect("an interrupted waiter gives up its place; a failed effect returns its permit", () =>
    Effect.gen(function*() {
      const limiter = yield* Limiter.make(1)
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(limiter.withPermit(Deferred.await(gate)))
      yield* Effect.yieldNow()
      const waiters = yield* Effect.forEach(
        Array.from({ length: 3 }),
        () => Effect.fork(limiter.withPermit(Effect.void))
      )
      yield* Effect.yieldNow()
      yield* Fiber.interruptAll(waiters)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      const failed = yield* Effect.either(limiter.withPermit(Effect.fail("boom")))
      assert.isTrue(failed._tag === "Left")
      // The one permit is free again: two effects run one after the other, neither waits forever.
      assert.strictEqual(yield* limiter.withPermit(Effect.succeed(1)), 1)
      assert.strictEqual(yield* limiter.withPermit(Effect.succeed(2)), 2)
    }))
})
