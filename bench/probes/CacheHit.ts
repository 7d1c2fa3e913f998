/**
 * The turn's cache step, in process: `npx tsx bench/probes/CacheHit.ts [operations=200000]`. One operation is what a
 * turn does to its history cache: read a session's entry (a hit, the store behind it is never asked) and write the
 * appended history through. `BoundedCache` (what core/Turns.ts uses) against effect's `Cache` (`Cache.make`, the
 * same capacity, the store as its lookup), rounds interleaved; CPU per operation from `process.cpuUsage()` and
 * Effect steps per operation counted by a supervisor (steps do not move with the load on the machine).
 */
import { Cache, Console, Duration, Effect, RuntimeFlags, RuntimeFlagsPatch } from "effect"
import { BoundedCache } from "../../src/internal/BoundedCache.js"
import { StepCounter } from "../lib/StepCounter.js"

const operations = Number(process.argv[2] ?? 200_000)
const sessions = 1_000
const keys = Array.from({ length: sessions }, (_, i) => `session-${i}`)
const store = new Map<string, ReadonlyArray<string>>(keys.map((key) => [key, ["hi"]]))

const bounded = new BoundedCache<string, ReadonlyArray<string>>(10_000)
for (const key of keys) bounded.set(key, store.get(key)!)
const boundedRound = Effect.gen(function*() {
  for (let i = 0; i < operations; i++) {
    const key = keys[i % sessions]!
    // The turn reads synchronously inside its own generator: no effect per read.
    const history = bounded.get(key) ?? (yield* Effect.sync(() => store.get(key)!))
    bounded.set(key, history)
  }
})

const effectCache = Cache.make({
  capacity: 10_000,
  timeToLive: Duration.infinity,
  lookup: (key: string) => Effect.sync(() => store.get(key)!)
})
const cacheRound = (cache: Cache.Cache<string, ReadonlyArray<string>>) =>
  Effect.gen(function*() {
    for (let i = 0; i < operations; i++) {
      const key = keys[i % sessions]!
      const history = yield* cache.get(key)
      yield* cache.set(key, history)
    }
  })

const measure = (name: string, round: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const counter = new StepCounter()
    yield* round.pipe(
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
    const before = process.cpuUsage()
    yield* round
    const used = process.cpuUsage(before)
    const micros = (used.user + used.system) / operations
    yield* Console.log(
      `${name.padEnd(14)} ${(micros * 1000).toFixed(0).padStart(5)} ns CPU/op  ${
        (counter.steps / operations).toFixed(1)
      } steps/op`
    )
  })

Effect.gen(function*() {
  const cache = yield* effectCache
  yield* cacheRound(cache) // loads every key once: the rounds below are all hits
  for (let round = 0; round < 3; round++) {
    yield* measure("BoundedCache", boundedRound)
    yield* measure("effect Cache", cacheRound(cache))
  }
}).pipe(Effect.runPromise)
