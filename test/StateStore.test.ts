/**
 * The StateStore contract (test/utils/StateStoreContract.ts) run against the memory store and the SQLite store (a
 * real database file in a temporary directory; Postgres: test/PgStateStore.test.ts), plus what only the SQLite store does: survive a reopen, quarantine
 * rows that no longer decode.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Option, Schema } from "effect"
import * as Path from "node:path"
import { assistantMessage, Message, userMessage } from "../src/domain/Message.js"
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
        yield* store.markSeen("n", "i")
      })
      yield* Effect.scoped(Effect.provide(write, SqliteStateStore.layer({ directory })))
      const read = Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.getAlias("k"), Option.some("s"))
        assert.deepStrictEqual(yield* store.findKeyByIdentity("telegram", "1"), Option.some("k"))
        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("one"), assistantMessage("two")])
        assert.deepStrictEqual(Option.map(yield* store.getResponse("r"), (r) => r.inputItems), Option.some([1]))
        assert.deepStrictEqual(yield* store.getCursor("c"), Option.some("v"))
        assert.isFalse(yield* store.markSeen("n", "i"))
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
})
