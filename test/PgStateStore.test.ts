/**
 * The StateStore contract on Postgres (a private server for the run, a database per test: test/utils/Postgres.ts),
 * plus what a persistent store must do beyond it: keep everything across a reopen, quarantine rows that no longer
 * decode, and share its tables safely between hosts.
 */
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted, TestClock, TestServices } from "effect"
import { assistantMessage, userMessage } from "../src/domain/Message.js"
import * as PgDb from "../src/state/postgres/PgDb.js"
import * as PgStateStore from "../src/state/postgres/PgStateStore.js"
import * as StateStore from "../src/state/StateStore.js"
import * as Postgres from "./utils/Postgres.js"
import { at, contract, ident } from "./utils/StateStoreContract.js"

const layerOn = (url: string) => PgStateStore.layer({ url: Redacted.make(url), maxConnections: 4 })

const layerFresh = Layer.unwrapScoped(Effect.map(Postgres.database, layerOn))

contract("postgres", () => layerFresh)

/**
 * Advances the clock one prune interval at a time (each run happens in the layer's own fiber, on the pool) and
 * reads until `done`: at most 100 intervals, each waited for on the live clock.
 */
const awaitPrune = <A>(read: Effect.Effect<A>, done: (a: A) => boolean): Effect.Effect<A> =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      yield* TestClock.adjust(StateStore.defaultSeenPrune.interval)
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(20)))
      const a = yield* read
      if (done(a)) return a
    }
    return yield* read
  })

describe("PgStateStore", () => {
  it.scoped("keeps everything across a close and reopen (migrations applied once)", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const write = Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        yield* store.setAlias("k", "s")
        yield* store.recordIdentity("k", ident("telegram", "1"), at(1))
        yield* store.appendHistory("s", [userMessage("one"), assistantMessage("two")])
        yield* store.putResponse({
          id: "r",
          sessionKey: "k",
          response: { ok: true },
          inputItems: [1],
          createdAt: at(1)
        })
        yield* store.setCursor("c", "v")
        yield* store.markSeen("n", "i", Duration.hours(1))
      })
      yield* Effect.scoped(Effect.provide(write, layerOn(url)))
      const read = Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.getAlias("k"), Option.some("s"))
        assert.deepStrictEqual(yield* store.findKeyByIdentity("telegram", "1"), Option.some("k"))
        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), assistantMessage("two")])
        assert.deepStrictEqual(Option.map(yield* store.getResponse("r"), (r) => r.createdAt), Option.some(at(1)))
        assert.deepStrictEqual(yield* store.getCursor("c"), Option.some("v"))
        assert.isFalse(yield* store.markSeen("n", "i", Duration.hours(1)))
        const sql = yield* SqlClient.SqlClient
        const applied = yield* sql<{ readonly n: string }>`SELECT count(*) AS n FROM agent_host_migrations`
        assert.strictEqual(Number(applied[0]!.n), 5)
      })
      yield* Effect.scoped(Effect.provide(
        read,
        Layer.merge(PgStateStore.layerWithoutDb, Layer.empty).pipe(
          Layer.provideMerge(PgDb.layer({ url: Redacted.make(url) }))
        )
      ))
    }))

  it.scoped("quarantines rows that no longer decode and returns the rest", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      yield* Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        const sql = yield* SqlClient.SqlClient
        yield* store.appendHistory("s", [userMessage("one"), userMessage("two"), userMessage("three")])
        yield* store.recordIdentity("k", ident("telegram", "1"), at(1))
        yield* store.recordIdentity("k", ident("webchat", "w"), at(2))
        yield* store.putResponse({ id: "r", sessionKey: "k", response: {}, inputItems: [], createdAt: at(1) })
        yield* store.appendResponseEvents("r2", [{ sequence: 1, event: 1 }, { sequence: 2, event: 2 }])
        // corrupt rows behind the store's back, as a bug or an old version would
        yield* sql`UPDATE chat_history SET message = '{not json'
          WHERE id = (SELECT MIN(id) + 1 FROM chat_history)`
        yield* sql`UPDATE identities SET identity = ${JSON.stringify({ channel: 42 })} WHERE channel = 'webchat'`
        yield* sql`UPDATE responses SET response = 'garbage' WHERE id = 'r'`
        yield* sql`UPDATE response_events SET event = '{' WHERE sequence = 1`

        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), userMessage("three")])
        assert.deepStrictEqual(yield* store.identities("k"), [ident("telegram", "1")])
        assert.isTrue(Option.isNone(yield* store.getResponse("r")))
        assert.deepStrictEqual(yield* store.responseEvents("r2", 0), [{ sequence: 2, event: 2 }])
        const quarantined = yield* store.quarantined
        assert.deepStrictEqual(quarantined.map((q) => q.table), [
          "chat_history",
          "identities",
          "responses",
          "response_events"
        ])
        assert.strictEqual(quarantined[0]!.raw, "{not json")
        // moved, not copied
        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), userMessage("three")])
        assert.strictEqual((yield* store.quarantined).length, 4)
      }).pipe(
        Effect.provide(PgStateStore.layerWithoutDb.pipe(Layer.provideMerge(PgDb.layer({ url: Redacted.make(url) })))),
        Effect.scoped
      )
    }))

  it.scoped("seen ids stored before migration 5 get 24 hours from the upgrade; the layer prunes expired ones", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const onDb = <A>(effect: Effect.Effect<A, never, SqlClient.SqlClient | StateStore.StateStore>) =>
        Effect.scoped(Effect.provide(
          effect,
          PgStateStore.layerWithoutDb.pipe(Layer.provideMerge(PgDb.layer({ url: Redacted.make(url) })))
        ))
      // The database as migration 4 left it, with a seen id in it.
      yield* onDb(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`DELETE FROM agent_host_migrations WHERE migration_id >= 5`
          yield* sql`ALTER TABLE seen_ids DROP COLUMN keep_until`
          yield* sql`INSERT INTO seen_ids (namespace, id) VALUES ('telegram:1', '42')`
        }).pipe(Effect.orDie)
      )
      const upgradedAt = 1_000_000_000
      yield* TestClock.setTime(upgradedAt)
      const keepUntil = (sql: SqlClient.SqlClient) =>
        sql<{ readonly id: string; readonly k: string }>`SELECT id, keep_until AS k FROM seen_ids ORDER BY id`.pipe(
          Effect.map((rows) => rows.map((r) => [r.id, Number(r.k)] as const)),
          Effect.orDie
        )
      yield* onDb(Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* keepUntil(sql), [["42", upgradedAt + Duration.toMillis(Duration.hours(24))]])
        yield* TestClock.adjust(Duration.hours(23))
        assert.isFalse(yield* store.markSeen("telegram:1", "42", Duration.minutes(1)))
        yield* store.markSeen("n", "long", Duration.hours(24))
        // Interval by interval past the legacy row's window: a periodic run removes it, not the longer one.
        const rows = yield* awaitPrune(keepUntil(sql), (rows) => rows.length === 1)
        assert.deepStrictEqual(rows.map(([id]) => id), ["long"])
      }))
    }))

  it.scoped("two hosts on one database: markSeen admits an id once, appends from both are kept", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const one = yield* Layer.build(layerOn(url))
      const two = yield* Layer.build(layerOn(url))
      const a = Effect.provide(StateStore.StateStore, one)
      const b = Effect.provide(StateStore.StateStore, two)
      const storeA = yield* a
      const storeB = yield* b
      const ids = Array.from({ length: 50 }, (_, i) => `u${i}`)
      const admitted = yield* Effect.forEach(
        ids,
        (id) =>
          Effect.all([
            storeA.markSeen("telegram", id, Duration.hours(1)),
            storeB.markSeen("telegram", id, Duration.hours(1))
          ], { concurrency: 2 }),
        { concurrency: 8 }
      )
      assert.isTrue(admitted.every(([x, y]) => x !== y))
      yield* Effect.all([
        storeA.appendHistory("s", [userMessage("from a")]),
        storeB.appendHistory("s", [userMessage("from b")])
      ], { concurrency: 2 })
      assert.strictEqual((yield* storeA.loadHistory("s")).length, 2)
    }))

  it.effect("a database that cannot be reached is a StateDatabaseUnavailable naming it, password masked", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(
          PgStateStore.layer({
            url: Redacted.make("postgres://app:secret@127.0.0.1:1/nope"),
            connectTimeout: "2 seconds"
          })
        ).pipe(Effect.scoped)
      )
      assert.strictEqual(error._tag, "StateDatabaseUnavailable")
      assert.include(error.message, "127.0.0.1:1")
      assert.notInclude(error.message, "secret")
      assert.include(error.message, "DATABASE_URL")
    }))
})
