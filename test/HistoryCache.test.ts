import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import { AgentHost } from "../src/core/AgentHost.js"
import { Turns } from "../src/core/Turns.js"
import * as Size from "../src/domain/Size.js"
import { BoundedCache } from "../src/internal/BoundedCache.js"
import * as TestHost from "./utils/TestHost.js"

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

describe("BoundedCache", () => {
  it("evicts least recently used entries by bytes, not only by count", () => {
    const cache = new BoundedCache<string, string>(1_000, {
      maxBytes: Size.bytes(100),
      sizeOf: (v) => Size.bytes(v.length)
    })
    cache.set("a", "x".repeat(40))
    cache.set("b", "x".repeat(40))
    assert.strictEqual(cache.bytes, 80)
    assert.isDefined(cache.get("a")) // a is now the most recently used
    cache.set("c", "x".repeat(40))
    // 120 > 100: the least recently used (b) goes, far below the count capacity.
    assert.isUndefined(cache.get("b"))
    assert.isDefined(cache.get("a"))
    assert.isDefined(cache.get("c"))
    assert.strictEqual(cache.size, 2)
    assert.strictEqual(cache.bytes, 80)
    // Replacing an entry counts its new size only.
    cache.set("a", "x".repeat(10))
    assert.strictEqual(cache.bytes, 50)
    // A value larger than the whole budget is not cached, and evicts nothing.
    cache.set("huge", "x".repeat(101))
    assert.isUndefined(cache.get("huge"))
    assert.strictEqual(cache.size, 2)
    cache.delete("c")
    assert.strictEqual(cache.bytes, 10)
  })

  it("still bounds the count", () => {
    const cache = new BoundedCache<number, number>(2)
    cache.set(1, 1)
    cache.set(2, 2)
    cache.set(3, 3)
    assert.isUndefined(cache.get(1))
    assert.strictEqual(cache.size, 2)
  })

  it("sizes parse from config text", () => {
    assert.deepStrictEqual(Size.parse("64 MiB"), Either.right(Size.mebibytes(64)))
    assert.deepStrictEqual(Size.parse("512kib"), Either.right(Size.kibibytes(512)))
    assert.deepStrictEqual(Size.parse("1048576"), Either.right(Size.bytes(1048576)))
    assert.isTrue(Either.isLeft(Size.parse("64 MB/s")))
    assert.isTrue(Either.isLeft(Size.parse("-1")))
  })
})

const BUDGET = Size.mebibytes(2)

describe("history cache in the host", () => {
  layer(TestHost.layer({
    channels: [Invocations.make()],
    settings: { historyCacheBytes: BUDGET, maxBodyBytes: 4 * 1024 * 1024 }
  }))((it) => {
    it.effect("many sessions with large messages keep the cache under its byte budget", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const turns = yield* Turns
        const big = "m".repeat(200_000)
        for (let i = 0; i < 40; i++) {
          const r = yield* post(`${host.url}/invocations`, { message: `${i} ${big}`, session_id: `big-${i}` })
          assert.strictEqual(r.status, 200)
          const stats = yield* turns.historyCache
          assert.isAtMost(stats.bytes, BUDGET, `after session ${i}`)
        }
        const stats = yield* turns.historyCache
        assert.isAbove(stats.sessions, 0)
        assert.isBelow(stats.sessions, 40)
        // An evicted session's history is read back from the store: the conversation goes on.
        const again = yield* post(`${host.url}/invocations`, { message: "short", session_id: "big-0" })
        assert.strictEqual(again.status, 200)
        assert.include(JSON.parse(again.body).response, "turn 2")
        // A history larger than the whole budget is not cached at all.
        const huge = yield* post(`${host.url}/invocations`, { message: "h".repeat(1_500_000), session_id: "huge" })
        assert.strictEqual(huge.status, 200)
        assert.isAtMost((yield* turns.historyCache).bytes, BUDGET)
        const next = yield* post(`${host.url}/invocations`, { message: "and?", session_id: "huge" })
        assert.include(JSON.parse(next.body).response, "turn 2")
      }))

    it.effect("a session minted for its turn is not cached; continued, it is read from the store, then cached", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const turns = yield* Turns
        const before = yield* turns.historyCache
        // No session_id: Invocations mints one (fresh) and returns it.
        const first = yield* post(`${host.url}/invocations`, { message: "one-shot" })
        assert.strictEqual(first.status, 200)
        const sessionId = String(JSON.parse(first.body).session_id)
        assert.deepStrictEqual(yield* turns.historyCache, before, "nothing cached for a one-shot session")
        const second = yield* post(`${host.url}/invocations`, { message: "and again", session_id: sessionId })
        assert.include(JSON.parse(second.body).response, "turn 2")
        const after = yield* turns.historyCache
        assert.strictEqual(after.sessions, before.sessions + 1, "a continued session is cached")
        const third = yield* post(`${host.url}/invocations`, { message: "once more", session_id: sessionId })
        assert.include(JSON.parse(third.body).response, "turn 3")
      }))
  })
})
