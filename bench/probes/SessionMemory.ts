/**
 * Memory per session actor, in-process: `node --expose-gc --import tsx bench/probes/SessionMemory.ts <keys>`.
 * Builds `Sessions.layer`, runs one trivial turn on each of N keys, and measures heap and RSS after forced GC:
 * per live actor (turn done, actor still in memory), then per key after a sweep released every idle actor.
 * Time is a TestClock, so the sweeper cannot run early and "idle timeout ~0" is one clock adjustment.
 * Prints one JSON line.
 */
import { Effect, Layer, TestClock, TestContext } from "effect"
import * as Sessions from "../../src/core/Sessions.js"

const keys = Number(process.argv[2] ?? 10_000)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with node --expose-gc")

const measure = () => {
  for (let i = 0; i < 4; i++) gc()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, rss: m.rss }
}

const program = Effect.gen(function*() {
  const sessions = yield* Sessions.Sessions
  // Keys exist before the baseline: callers hold them anyway; the figure is what the host adds per key.
  const names = Array.from({ length: keys }, (_, i) => `bench:session-${i}`)
  const before = measure()
  const t0 = performance.now()
  for (const key of names) {
    const wait = yield* sessions.submit(key, "queue", () => Effect.void)
    yield* wait
  }
  const submitMs = performance.now() - t0
  const live = measure()
  const liveStats = yield* sessions.stats
  yield* TestClock.adjust("1 second")
  yield* sessions.sweep
  const idle = measure()
  const idleStats = yield* sessions.stats
  if (liveStats.live !== keys || idleStats.live !== 0) {
    return yield* Effect.dieMessage(`expected ${keys} live then 0, got ${liveStats.live} then ${idleStats.live}`)
  }
  return {
    keys,
    turnsPerSecond: keys / (submitMs / 1_000),
    liveHeapPerKey: (live.heap - before.heap) / keys,
    liveRssPerKey: (live.rss - before.rss) / keys,
    idleHeapPerKey: (idle.heap - before.heap) / keys,
    idleRssPerKey: (idle.rss - before.rss) / keys,
    names: names.length
  }
})

void Effect.runPromise(
  program.pipe(
    Effect.provide(
      Layer.provideMerge(
        Sessions.layer({ idleTimeout: "1 millis", maxActors: keys, maxIdle: keys }),
        TestContext.TestContext
      )
    )
  )
).then((result) => {
  console.log(JSON.stringify(result))
  process.exit(0)
}, (error) => {
  console.error(error)
  process.exit(1)
})
