/**
 * The StateStore contract (test/utils/StateStoreContract.ts) run against the memory store and the SQLite store (a
 * real database file in a temporary directory; Postgres: test/PgStateStore.test.ts), plus what only the SQLite store does: survive a reopen, quarantine
 * rows that no longer decode.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, Option, Schema, TestClock, TestServices } from "effect"
import * as Path from "node:path"
import { assistantMessage, Message, userMessage } from "../src/domain/Message.js"
import type * as Time from "../src/domain/Time.js"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as StateStore from "../src/state/StateStore.js"
import { at, contract, ident } from "./utils/StateStoreContract.js"
import * as TempDir from "./utils/TempDir.js"

const layerSqliteTemp = Layer.unwrapScoped(
  Effect.map(TempDir.make(), (directory) => SqliteStateStore.layer({ directory }))
)

contract("memory", () => StateStore.layerMemory)
contract("sqlite", () => layerSqliteTemp)

const openRaw = (directory: string) => NativeSqlite.open(Path.join(directory, StateDb.databaseFile))

/** Every content kind, and every optional field of a message, its hosting metadata and its identities. */
const everyKind: ReadonlyArray<Message> = [
  userMessage("plain"),
  {
    id: "m1",
    role: "assistant",
    authorName: "bot",
    contents: [
      { _tag: "text", text: "hi \u2028 \"quoted\" ü 😀", annotations: [{ type: "url", url: "https://x" }, 1, null] },
      { _tag: "data", mediaType: "image/png", data: "aGk=", name: "a.png" },
      { _tag: "data", mediaType: "text/plain", data: "" },
      { _tag: "uri", uri: "https://example.com/a", mediaType: "text/html", name: "a" },
      { _tag: "uri", uri: "https://example.com/b", mediaType: "text/html" },
      { _tag: "function_call", callId: "c1", name: "f", arguments: "{\"a\":1}" },
      { _tag: "function_result", callId: "c1", result: "42" },
      { _tag: "reasoning", text: "because" },
      { _tag: "error", message: "bad", code: "E1" },
      { _tag: "error", message: "bad" },
      { _tag: "usage", usage: { inputTokens: 1, outputTokens: 2.5, totalTokens: 3.5 } }
    ],
    hosting: {
      channel: "telegram",
      identity: ident("telegram", "1", { name: "Ann", nested: { list: [1, "two", null, true] } }),
      responseTarget: {
        kind: "identities",
        targets: ["webchat", "telegram:1", "originating"],
        identities: [ident("webchat", "w"), ident("telegram", "2", {})],
        echoInput: true
      },
      intendedTargets: ["telegram:1"],
      skippedTargets: [{ target: "webchat:w", reason: "offline" }],
      includesOriginating: false,
      originatingChannel: "telegram"
    }
  },
  { role: "system", contents: [] },
  { role: "developer", contents: [{ _tag: "text", text: "" }] },
  { role: "tool", contents: [{ _tag: "function_result", callId: "c", result: "" }], hosting: {} }
]

describe("message encoding", () => {
  const encode = Schema.encodeSync(Schema.parseJson(Message))
  const decode = Schema.decodeUnknownSync(Schema.parseJson(Message))

  it("JSON.stringify writes what the Schema encoder writes, for every content kind, and decodes back", () => {
    for (const message of everyKind) {
      assert.deepStrictEqual(JSON.parse(JSON.stringify(message)), JSON.parse(encode(message)))
      assert.deepStrictEqual(decode(JSON.stringify(message)), message)
    }
  })

  it.effect("every content kind survives the SQLite store", () =>
    Effect.gen(function*() {
      const store = yield* StateStore.StateStore
      yield* store.appendHistory("s", everyKind)
      assert.deepStrictEqual(yield* store.loadHistory("s"), everyKind)
      assert.deepStrictEqual(yield* store.quarantined, [])
    }).pipe(Effect.provide(layerSqliteTemp), Effect.scoped))
})

describe("SqliteStateStore", () => {
  it.scoped("keeps everything across a close and reopen", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
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
      yield* Effect.scoped(Effect.provide(write, SqliteStateStore.layer({ directory })))
      const read = Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.getAlias("k"), Option.some("s"))
        assert.deepStrictEqual(yield* store.findKeyByIdentity("telegram", "1"), Option.some("k"))
        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), assistantMessage("two")])
        assert.deepStrictEqual(Option.map(yield* store.getResponse("r"), (r) => r.inputItems), Option.some([1]))
        assert.deepStrictEqual(yield* store.getCursor("c"), Option.some("v"))
        assert.isFalse(yield* store.markSeen("n", "i", Duration.hours(1)))
      })
      yield* Effect.scoped(Effect.provide(read, SqliteStateStore.layer({ directory })))
    }))

  it.scoped("quarantines rows that no longer decode and returns the rest", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      const layer = SqliteStateStore.layer({ directory })
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* StateStore.StateStore
          yield* store.appendHistory("s", [userMessage("one"), userMessage("two"), userMessage("three")])
          yield* store.recordIdentity("k", ident("telegram", "1"), at(1))
          yield* store.recordIdentity("k", ident("webchat", "w"), at(2))
          yield* store.putResponse({ id: "r", sessionKey: "k", response: {}, inputItems: [], createdAt: at(1) })
          yield* store.appendResponseEvents("r2", [{ sequence: 1, event: 1 }, { sequence: 2, event: 2 }])
        }),
        layer
      ))
      // corrupt rows behind the store's back, as a crash, a bug or an old version would
      const db = openRaw(directory)
      db.prepare("UPDATE chat_history SET message = ? WHERE id = (SELECT MIN(id) + 1 FROM chat_history)").run(
        "{not json"
      )
      db.prepare("UPDATE identities SET identity = ? WHERE channel = 'webchat'").run(
        JSON.stringify({ channel: 42 })
      )
      db.prepare("UPDATE responses SET response = ? WHERE id = 'r'").run("garbage")
      db.prepare("UPDATE response_events SET event = ? WHERE sequence = 1").run("{")
      db.close()

      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* StateStore.StateStore
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
          assert.isAbove(quarantined[0]!.reason.length, 0)
          // moved, not copied: a second read finds nothing more to quarantine
          assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), userMessage("three")])
          assert.strictEqual((yield* store.quarantined).length, 4)
          // and the session goes on
          yield* store.appendHistory("s", [userMessage("four")])
          assert.strictEqual((yield* store.loadHistory("s")).length, 3)
        }),
        Layer.merge(layer, Logger.replace(Logger.defaultLogger, logger))
      ))
      assert.strictEqual(logs.filter((l) => l.includes("quarantined")).length, 4)
    }))

  it.scoped("sqlite: seen ids stored before migration 7 get 24 hours from the upgrade", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      yield* Effect.scoped(Effect.provide(Effect.void, SqliteStateStore.layer({ directory })))
      // The database as migration 6 left it, with a seen id in it.
      const db = openRaw(directory)
      db.exec("DELETE FROM agent_host_migrations WHERE migration_id >= 7")
      db.exec("DROP INDEX responses_by_status")
      db.exec("ALTER TABLE responses DROP COLUMN status")
      db.exec("DROP INDEX seen_ids_by_keep_until")
      db.exec("ALTER TABLE seen_ids DROP COLUMN keep_until")
      db.prepare("INSERT INTO seen_ids (namespace, id) VALUES (?, ?)").run("telegram:1", "42")
      db.close()
      const upgradedAt = 1_000_000_000
      yield* TestClock.setTime(upgradedAt)
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* StateStore.StateStore
          const raw = openRaw(directory)
          const row = raw.prepare("SELECT keep_until AS k FROM seen_ids WHERE id = '42'").get() as { k: number }
          raw.close()
          assert.strictEqual(row.k, upgradedAt + Duration.toMillis(Duration.hours(24)))
          yield* TestClock.adjust(Duration.hours(23))
          assert.isFalse(yield* store.markSeen("telegram:1", "42", Duration.minutes(1)))
        }),
        SqliteStateStore.layer({ directory })
      ))
    }))

  it.scoped("sqlite: responses stored before migration 9 get the status their JSON holds", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      yield* Effect.scoped(Effect.provide(Effect.void, SqliteStateStore.layer({ directory })))
      // The database as migration 8 left it (status indexed as a JSON expression), with responses in it.
      const db = openRaw(directory)
      db.exec("DELETE FROM agent_host_migrations WHERE migration_id >= 9")
      db.exec("DROP INDEX responses_by_status")
      db.exec("ALTER TABLE responses DROP COLUMN status")
      db.exec(`CREATE INDEX responses_by_status
        ON responses (CASE WHEN json_valid(response) THEN json_extract(response, '$.status') END)`)
      const insert = db.prepare(
        "INSERT INTO responses (id, session_key, response, input_items, created_at) VALUES (?, 'k', ?, '[]', ?)"
      )
      insert.run("queued", JSON.stringify({ id: "queued", status: "queued" }), 1)
      insert.run("done", JSON.stringify({ id: "done", status: "completed" }), 2)
      insert.run("odd", JSON.stringify({ id: "odd", status: 7 }), 3)
      db.close()
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* StateStore.StateStore
          assert.deepStrictEqual((yield* store.responsesWithStatus(["queued"])).map((r) => r.id), ["queued"])
          assert.deepStrictEqual((yield* store.responsesWithStatus(["completed"])).map((r) => r.id), ["done"])
          const raw = openRaw(directory)
          const rows = raw.prepare("SELECT id, status FROM responses ORDER BY created_at").all()
          raw.close()
          assert.deepStrictEqual(rows, [
            { id: "queued", status: "queued" },
            { id: "done", status: "completed" },
            { id: "odd", status: "" }
          ])
        }),
        SqliteStateStore.layer({ directory })
      ))
    }))

  it.scoped("sqlite: the layer prunes expired seen ids at start and every interval", () =>
    Effect.gen(function*() {
      const directory = yield* TempDir.make()
      const count = () => {
        const raw = openRaw(directory)
        const row = raw.prepare("SELECT count(*) AS n FROM seen_ids").get() as { n: number }
        raw.close()
        return row.n
      }
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* StateStore.StateStore
          yield* store.markSeen("n", "short", Duration.minutes(1))
          yield* store.markSeen("n", "long", Duration.hours(1))
        }),
        SqliteStateStore.layer({ directory })
      ))
      assert.strictEqual(count(), 2)
      // Reopened past the short window: the run at start removes it (and only it).
      yield* TestClock.adjust(Duration.minutes(2))
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          yield* StateStore.StateStore
          yield* awaitCount(count, 1, Duration.zero)
          // Interval by interval past the long window: a periodic run removes it.
          yield* awaitCount(count, 0, StateStore.defaultSeenPrune.interval)
        }),
        SqliteStateStore.layer({ directory })
      ))
    }))
})

/**
 * Advances the clock by `step` and counts, until the count is `expected` (at most 100 steps, each waited for on the
 * live clock): the prune runs in the layer's own fiber.
 */
const awaitCount = (count: () => number, expected: number, step: Duration.Duration) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100 && count() !== expected; i++) {
      yield* TestClock.adjust(step)
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(10)))
    }
    assert.strictEqual(count(), expected)
  })

describe("pruneSeenPeriodically", () => {
  it.scoped("runs at start and every interval, in batches until a short one, at most maxBatches per run", () =>
    Effect.gen(function*() {
      let backlog = 23
      const calls: Array<number> = []
      const fake = {
        pruneSeen: (_before: Time.EpochMillis, limit: number) =>
          Effect.sync(() => {
            const n = Math.min(limit, backlog)
            backlog -= n
            calls.push(n)
            return n
          })
      }
      const settings = { interval: Duration.minutes(5), batch: 5, maxBatches: 3 }
      yield* StateStore.pruneSeenPeriodically(fake, settings)
      yield* Effect.yieldNow()
      // at start: three full batches, then the run stops (the backlog waits for the next one)
      assert.deepStrictEqual(calls, [5, 5, 5])
      yield* TestClock.adjust(Duration.minutes(4))
      assert.deepStrictEqual(calls, [5, 5, 5])
      yield* TestClock.adjust(Duration.minutes(1))
      // the next run: one full batch, then a short one ends it
      assert.deepStrictEqual(calls, [5, 5, 5, 5, 3])
      yield* TestClock.adjust(Duration.minutes(5))
      assert.deepStrictEqual(calls, [5, 5, 5, 5, 3, 0])
    }))

  it.scoped("a failed run is logged and the next one runs", () =>
    Effect.gen(function*() {
      let runs = 0
      const fake = {
        pruneSeen: () => Effect.suspend(() => ++runs === 1 ? Effect.die("disk on fire") : Effect.succeed(0))
      }
      yield* StateStore.pruneSeenPeriodically(fake, { interval: Duration.minutes(1), batch: 10, maxBatches: 1 })
      yield* Effect.yieldNow()
      assert.strictEqual(runs, 1)
      yield* TestClock.adjust(Duration.minutes(1))
      assert.strictEqual(runs, 2)
    }))
})
