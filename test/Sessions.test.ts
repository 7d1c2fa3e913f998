import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Scope, TestClock } from "effect"
import * as Sessions from "../src/core/Sessions.js"

/** The fiber running the test (what a streamed turn's frame names in `attach`). */
const currentFiber: Effect.Effect<Fiber.RuntimeFiber<unknown, unknown>> = Effect.withFiberRuntime((fiber) =>
  Effect.succeed(fiber as Fiber.RuntimeFiber<unknown, unknown>)
)

describe("Sessions", () => {
  it.scoped("runs turns for one key one at a time, in arrival order", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const log: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const turn = (name: string, wait: boolean) =>
        Effect.gen(function*() {
          log.push(`start ${name}`)
          if (wait) yield* Deferred.await(gate)
          log.push(`end ${name}`)
          return name
        })
      const a = yield* sessions.submit("k", "queue", () => turn("a", true))
      const b = yield* sessions.submit("k", "queue", () => turn("b", false))
      const c = yield* sessions.submit("k", "queue", () => turn("c", false))
      const all = yield* Effect.fork(Effect.all([a, b, c]))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(log, ["start a"])
      assert.deepStrictEqual(yield* sessions.stats, { live: 1, running: 1, queued: 2 })
      yield* Deferred.succeed(gate, void 0)
      assert.deepStrictEqual(yield* Fiber.join(all), ["a", "b", "c"])
      assert.deepStrictEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"])
    }))

  it.scoped("runs different keys in parallel", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const startedA = yield* Deferred.make<void>()
      const startedB = yield* Deferred.make<void>()
      // Each turn waits for the other to have started: only parallel execution can finish.
      const a = yield* sessions.submit("a", "queue", () =>
        Deferred.succeed(startedA, void 0).pipe(Effect.zipRight(Deferred.await(startedB)), Effect.as("a")))
      const b = yield* sessions.submit("b", "queue", () =>
        Deferred.succeed(startedB, void 0).pipe(Effect.zipRight(Deferred.await(startedA)), Effect.as("b")))
      assert.deepStrictEqual(yield* Effect.all([a, b]), ["a", "b"])
    }))

  it.scoped("releases idle actors after the idle time and recreates them on demand", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make({ idleTimeout: "10 minutes" })
      yield* Effect.flatten(sessions.submit("k", "queue", () => Effect.void))
      assert.isTrue(yield* sessions.isLive("k"))
      yield* TestClock.adjust(Duration.minutes(9))
      assert.isTrue(yield* sessions.isLive("k"))
      yield* TestClock.adjust(Duration.minutes(2))
      // The periodic sweeper has run under the test clock.
      assert.isFalse(yield* sessions.isLive("k"))
      assert.strictEqual(yield* Effect.flatten(sessions.submit("k", "queue", () => Effect.succeed(7))), 7)
      assert.isTrue(yield* sessions.isLive("k"))
    }))

  it.scoped("closes an actor's scope when it is released", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make({ idleTimeout: "1 minute" })
      let closed = 0
      yield* Effect.flatten(
        sessions.submit("k", "queue", (actor) =>
          Effect.flatMap(actor.scope, (scope) =>
            Scope.addFinalizer(scope, Effect.sync(() => void closed++))))
      )
      assert.strictEqual(closed, 0)
      yield* TestClock.adjust(Duration.minutes(2))
      assert.isFalse(yield* sessions.isLive("k"))
      assert.strictEqual(closed, 1)
    }))

  it.scoped("bounds live actors: evicts the least recently used idle one, refuses when all are busy", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make({ maxActors: 2 })
      yield* Effect.flatten(sessions.submit("a", "queue", () => Effect.void))
      yield* Effect.flatten(sessions.submit("b", "queue", () => Effect.void))
      yield* Effect.flatten(sessions.submit("a", "queue", () => Effect.void))
      yield* Effect.flatten(sessions.submit("c", "queue", () => Effect.void))
      assert.isFalse(yield* sessions.isLive("b"), "b was the least recently used")
      assert.isTrue(yield* sessions.isLive("a"))
      assert.isTrue(yield* sessions.isLive("c"))
      const gate = yield* Deferred.make<void>()
      const waitA = yield* sessions.submit("a", "queue", () => Deferred.await(gate))
      const waitC = yield* sessions.submit("c", "queue", () => Deferred.await(gate))
      const refused = yield* Effect.flip(Effect.asVoid(sessions.submit("d", "queue", () => Effect.void)))
      assert.strictEqual(refused._tag, "SessionCapacityExceeded")
      yield* Deferred.succeed(gate, void 0)
      yield* Effect.all([waitA, waitC])
    }))

  it.scoped("busy policy reject: a second turn fails with SessionBusy while one runs", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const gate = yield* Deferred.make<void>()
      const first = yield* sessions.submit("k", "reject", () => Deferred.await(gate).pipe(Effect.as("first")))
      const busy = yield* Effect.flip(Effect.asVoid(sessions.submit("k", "reject", () => Effect.succeed("second"))))
      assert.strictEqual(busy._tag, "SessionBusy")
      assert.include(busy.message, "k")
      yield* Deferred.succeed(gate, void 0)
      assert.strictEqual(yield* first, "first")
      assert.strictEqual(yield* Effect.flatten(sessions.submit("k", "reject", () => Effect.succeed("later"))), "later")
    }))

  it.scoped("busy policy interrupt: the running turn is cancelled and the new one runs", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const started = yield* Deferred.make<void>()
      let interrupted = false
      const first = yield* sessions.submit("k", "interrupt", () =>
        Deferred.succeed(started, void 0).pipe(
          Effect.zipRight(Effect.never),
          Effect.onInterrupt(() => Effect.sync(() => (interrupted = true)))
        ))
      yield* Deferred.await(started)
      const second = yield* sessions.submit("k", "interrupt", () => Effect.succeed("second"))
      const firstExit = yield* Effect.exit(first)
      assert.isTrue(Exit.isFailure(firstExit))
      if (Exit.isFailure(firstExit)) assert.include(String(firstExit.cause), "TurnCancelled")
      assert.strictEqual(yield* second, "second")
      assert.isTrue(interrupted)
    }))

  it.scoped("busy policy interrupt on an inline turn entered before its fiber: cancelled at attach, the actor moves on", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      // A streamed inline turn holds the actor from `enterInline`; its frame (and fiber) only come with its body.
      const entry = sessions.enterInline("k", "queue", undefined)
      assert.isDefined(entry)
      assert.deepStrictEqual(yield* sessions.stats, { live: 1, running: 1, queued: 0 })
      // Another channel's turn on the key with the `interrupt` policy: nothing to interrupt yet, so it marks the
      // inline turn cancelled and queues behind it.
      const second = yield* sessions.submit("k", "interrupt", () => Effect.succeed("second"))
      const waiting = yield* Effect.fork(second)
      yield* Effect.yieldNow()
      assert.isNull(waiting.unsafePoll())
      // The frame starts: told it was cancelled, it does not run the turn and leaves; the queued turn runs.
      const self = yield* currentFiber
      assert.isFalse(sessions.attach(entry!, self))
      yield* sessions.leave(entry!)
      assert.strictEqual(yield* Fiber.join(waiting), "second")
      // Not stuck busy: a later turn runs.
      assert.strictEqual(yield* Effect.flatten(sessions.submit("k", "queue", () => Effect.succeed(3))), 3)
    }))

  it.scoped("an inline turn entered before its fiber and attached uncancelled runs as usual", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const entry = sessions.enterInline("k", "queue", undefined)
      assert.isDefined(entry)
      const self = yield* currentFiber
      assert.isTrue(sessions.attach(entry!, self))
      const next = yield* sessions.submit("k", "queue", () => Effect.succeed("next"))
      yield* sessions.leave(entry!)
      assert.strictEqual(yield* next, "next")
    }))

  it.scoped("a transient actor (a key minted for its turn) is released when the turn ends, unless another came", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      // Inline: released at leave.
      const one = sessions.enterInline("once", "queue", undefined, true)
      assert.isDefined(one)
      assert.isTrue(yield* sessions.isLive("once"))
      yield* sessions.leave(one!)
      assert.isFalse(yield* sessions.isLive("once"))
      // Submitted: released when its job ends.
      yield* Effect.flatten(sessions.submit("queued-once", "queue", () => Effect.void, { transient: true }))
      assert.isFalse(yield* sessions.isLive("queued-once"))
      // A second turn for the key while the first runs: a conversation after all, the actor is kept.
      const first = sessions.enterInline("continued", "queue", undefined, true)
      assert.isDefined(first)
      const next = yield* sessions.submit("continued", "queue", () => Effect.succeed("second"))
      yield* sessions.leave(first!)
      assert.strictEqual(yield* next, "second")
      assert.isTrue(yield* sessions.isLive("continued"))
      assert.strictEqual((yield* sessions.stats).live, 1)
      // Without the flag an idle actor stays for reuse.
      yield* sessions.leave(sessions.enterInline("kept", "queue", undefined)!)
      assert.isTrue(yield* sessions.isLive("kept"))
    }))

  // Issue 13 point 16: a flood of one-shot sessions kept every actor for the idle timeout (15 minutes, up to
  // 100 000 of them); above maxIdle the least recently used idle actors now go at once.
  it.scoped("keeps at most maxIdle idle actors: a flood of one-shot sessions is released at once, LRU first", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make({ maxIdle: 10 })
      for (let i = 0; i < 2000; i++) yield* Effect.flatten(sessions.submit(`one-shot-${i}`, "queue", () => Effect.void))
      assert.strictEqual((yield* sessions.stats).live, 10)
      assert.isTrue(yield* sessions.isLive("one-shot-1999"))
      assert.isFalse(yield* sessions.isLive("one-shot-0"))
      // Busy actors are never trimmed.
      const gate = yield* Deferred.make<void>()
      const waits = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => sessions.submit(`busy-${i}`, "queue", () => Deferred.await(gate))
      )
      yield* Effect.flatten(sessions.submit("one-more", "queue", () => Effect.void))
      const during = yield* sessions.stats
      assert.strictEqual(during.running, 20)
      yield* Deferred.succeed(gate, void 0)
      yield* Effect.forEach(waits, (wait) => wait)
      assert.isAtMost((yield* sessions.stats).live, 10)
    }))

  it.scoped("a waiter that goes away does not cancel the turn", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions.make()
      const gate = yield* Deferred.make<void>()
      const done = yield* Deferred.make<string>()
      const wait = yield* sessions.submit("k", "queue", () =>
        Deferred.await(gate).pipe(Effect.zipRight(Deferred.succeed(done, "finished"))))
      const waiter = yield* Effect.fork(wait)
      yield* Fiber.interrupt(waiter)
      yield* Deferred.succeed(gate, void 0)
      assert.strictEqual(yield* Deferred.await(done), "finished")
    }))
})
