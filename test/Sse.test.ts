/**
 * SSE heartbeats, on the TestClock: a comment once a stream stayed silent for a whole interval, none while frames
 * flow, frames in order, and nothing left running once a stream ends, fails or is abandoned, or once the owner of
 * a shared heartbeat closes its scope.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Mailbox, Scope, Stream, Supervisor, TestClock } from "effect"
import * as LiveBody from "../src/http/LiveBody.js"
import * as Sse from "../src/http/Sse.js"

const until = (done: () => boolean) =>
  Effect.gen(function*() {
    while (!done()) yield* Effect.yieldNow()
  })

/** Runs `effect` with every fiber it forks tracked; then asserts none of them is still alive. */
const leavesNoFiber = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const supervisor = yield* Supervisor.track
    const result = yield* Effect.supervised(effect, supervisor)
    yield* Effect.yieldNow()
    const alive = (yield* supervisor.value).filter((fiber) => fiber.unsafePoll() === null)
    assert.strictEqual(alive.length, 0, "fibers left running")
    return result
  })

/** A sink recording what a live body writes (as the host's listener would send it). */
const recordingSink = (written: Array<string>): LiveBody.Sink => ({
  write: (text) => Effect.sync(() => written.push(text)),
  unsafeWrite: (text) => written.push(text)
})

/** Collects what `stream` emits into `seen`, in a fiber. */
const collect = <E>(stream: Stream.Stream<string, E>, seen: Array<string>) =>
  Effect.fork(Stream.runForEach(stream, (frame) => Effect.sync(() => seen.push(frame))))

describe("Sse heartbeats", () => {
  it.effect("a comment once a whole interval passed silent, none while frames flow; ends with its source", () =>
    Effect.gen(function*() {
      const source = yield* Mailbox.make<string>()
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(leavesNoFiber(
        Stream.runForEach(
          Sse.withHeartbeat(Mailbox.toStream(source), "10 seconds"),
          (frame) => Effect.sync(() => seen.push(frame))
        )
      ))
      yield* source.offer("start")
      yield* until(() => seen.length === 1)
      // The first look finds a frame sent; the second finds the stream silent since.
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, ["start"])
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, ["start", Sse.HEARTBEAT])
      // Frames ready together are emitted together.
      yield* source.offerAll(["a", "b"])
      yield* until(() => seen.length === 3)
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, ["start", Sse.HEARTBEAT, "ab"])
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, ["start", Sse.HEARTBEAT, "ab", Sse.HEARTBEAT])
      yield* source.offer("c")
      yield* source.end
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(seen, ["start", Sse.HEARTBEAT, "ab", Sse.HEARTBEAT, "c"])
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

  it.effect("one heartbeat for many streams: only the silent ones get comments; its ticker ends with its scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* leavesNoFiber(
        Effect.gen(function*() {
          const beats = yield* Scope.extend(Sse.heartbeat("10 seconds"), scope)
          const busy = yield* Mailbox.make<string>()
          const busySeen: Array<string> = []
          const quietSeen: Array<string> = []
          const busyFiber = yield* collect(beats.withHeartbeat(Mailbox.toStream(busy)), busySeen)
          const quietFiber = yield* collect(
            beats.produce((emit) => Effect.zipRight(emit("hello"), Effect.never)),
            quietSeen
          )
          yield* until(() => quietSeen.length === 1)
          for (let i = 1; i <= 3; i++) {
            yield* busy.offer(`frame ${i}`)
            yield* until(() => busySeen.length === i)
            yield* TestClock.adjust("10 seconds")
          }
          assert.deepStrictEqual(busySeen, ["frame 1", "frame 2", "frame 3"])
          assert.deepStrictEqual(quietSeen, ["hello", Sse.HEARTBEAT, Sse.HEARTBEAT])
          yield* busy.end
          yield* Fiber.join(busyFiber)
          // A reader that stops interrupts `produce`'s body (here waiting forever).
          yield* Fiber.interrupt(quietFiber)
          yield* Scope.close(scope, Exit.void)
        })
      )
    }))

  it.effect("written live (the host's listener): the same frames and heartbeats, straight to the connection", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* leavesNoFiber(
        Effect.gen(function*() {
          const beats = yield* Scope.extend(Sse.heartbeat("10 seconds"), scope)
          // A response of a heartbeat's stream carries its body's live run.
          const response = Sse.response(beats.produce((emit) => Effect.zipRight(emit("hello"), Effect.never)))
          assert.strictEqual(response.body._tag, "Stream")
          const run = response.body._tag === "Stream" ? LiveBody.runOf(response.body.stream) : undefined
          assert.isDefined(run)
          const written: Array<string> = []
          const fiber = yield* Effect.fork(run!(recordingSink(written)))
          yield* until(() => written.length === 1)
          // The first look sees "hello"; each later one a whole silent interval.
          for (let i = 0; i < 3; i++) yield* TestClock.adjust("10 seconds")
          assert.deepStrictEqual(written, ["hello", Sse.HEARTBEAT, Sse.HEARTBEAT])
          // The caller went away: the body is interrupted, and its stream gets no heartbeat after.
          yield* Fiber.interrupt(fiber)
          yield* TestClock.adjust("10 seconds")
          assert.strictEqual(written.length, 3)

          // Any stream of frames: each chunk in one write, then done (the listener ends the response).
          const plain: Array<string> = []
          const frames = Stream.fromChunks(Chunk.make("a", "b"), Chunk.make("c"))
          const plainResponse = Sse.response(frames)
          if (plainResponse.body._tag !== "Stream") return assert.fail("not a stream body")
          yield* LiveBody.runOf(plainResponse.body.stream)!(recordingSink(plain))
          assert.deepStrictEqual(plain, ["ab", "c"])
          yield* Scope.close(scope, Exit.void)
        })
      )
    }))
})

describe("Sse frames", () => {
  it("one data line per line of data, after the id and the event name", () => {
    assert.strictEqual(Sse.frame(" word"), "data:  word\n\n")
    assert.strictEqual(Sse.frame("a\nb\r\nc\rd"), "data: a\ndata: b\ndata: c\ndata: d\n\n")
    assert.strictEqual(Sse.frame("{}", "error"), "event: error\ndata: {}\n\n")
    assert.strictEqual(Sse.frame("x\ny", "e", "7"), "id: 7\nevent: e\ndata: x\ndata: y\n\n")
    assert.strictEqual(Sse.frame(""), "data: \n\n")
  })
})
