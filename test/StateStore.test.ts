/**
 * One contract for every StateStore implementation, run against the memory store and the SQLite store (a real
 * database file in a temporary directory), plus what only the SQLite store does: survive a reopen, quarantine
 * rows that no longer decode.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Option, Schema } from "effect"
import * as Path from "node:path"
import type { ChannelIdentity } from "../src/domain/Identity.js"
import { ChannelName } from "../src/domain/Ids.js"
import { assistantMessage, Message, userMessage } from "../src/domain/Message.js"
import * as Time from "../src/domain/Time.js"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as StateStore from "../src/state/StateStore.js"
import * as TempDir from "./utils/TempDir.js"

const ident = (channel: string, nativeId: string, attributes?: Record<string, unknown>): ChannelIdentity =>
  attributes === undefined ?
    { channel: ChannelName.make(channel), nativeId } :
    { channel: ChannelName.make(channel), nativeId, attributes }

const at = Time.fromMillis

const layerSqliteTemp = Layer.unwrapScoped(
  Effect.map(TempDir.make(), (directory) => SqliteStateStore.layer({ directory }))
)

const contract = (name: string, makeLayer: () => Layer.Layer<StateStore.StateStore, unknown>) =>
  describe(`StateStore contract: ${name}`, () => {
    const test = (title: string, body: Effect.Effect<void, never, StateStore.StateStore>) =>
      it.scoped(title, () => Effect.provide(body, makeLayer()))

    test(
      "aliases",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.isTrue(Option.isNone(yield* store.getAlias("k")))
        yield* store.setAlias("k", "s1")
        yield* store.setAlias("k", "s2")
        assert.deepStrictEqual(yield* store.getAlias("k"), Option.some("s2"))
        assert.isTrue(Option.isNone(yield* store.getAlias("other")))
      })
    )

    test(
      "identities, active channel and lookup by identity",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.identities("k"), [])
        assert.isTrue(Option.isNone(yield* store.activeChannel("k")))
        yield* store.recordIdentity("k", ident("telegram", "1"), at(10))
        yield* store.recordIdentity("k", ident("webchat", "w", { name: "Ann" }), at(11))
        assert.deepStrictEqual(yield* store.activeChannel("k"), Option.some("webchat"))
        // seen again on telegram with a new native id: telegram becomes active, one identity per channel
        yield* store.recordIdentity("k", ident("telegram", "2"), at(12))
        assert.deepStrictEqual(yield* store.activeChannel("k"), Option.some("telegram"))
        assert.deepStrictEqual(yield* store.identities("k"), [
          ident("telegram", "2"),
          ident("webchat", "w", { name: "Ann" })
        ])
        assert.deepStrictEqual(yield* store.findKeyByIdentity("webchat", "w"), Option.some("k"))
        assert.deepStrictEqual(yield* store.findKeyByIdentity("telegram", "2"), Option.some("k"))
        assert.isTrue(Option.isNone(yield* store.findKeyByIdentity("webchat", "nobody")))
        // the same identity seen under another key: the lookup follows the latest
        yield* store.recordIdentity("k2", ident("webchat", "w"), at(13))
        assert.deepStrictEqual(yield* store.findKeyByIdentity("webchat", "w"), Option.some("k2"))
        assert.deepStrictEqual(yield* store.activeChannel("k2"), Option.some("webchat"))
      })
    )

    test(
      "chat history appends in order per session",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.loadHistory("s"), [])
        const first: ReadonlyArray<Message> = [
          userMessage("hello"),
          { ...assistantMessage("hi", "m1"), hosting: { channel: "invocations", originatingChannel: "invocations" } }
        ]
        yield* store.appendHistory("s", first)
        yield* store.appendHistory("s", [])
        yield* store.appendHistory("other", [userMessage("elsewhere")])
        yield* store.appendHistory("s", [userMessage("again")])
        assert.deepStrictEqual(yield* store.loadHistory("s"), [...first, userMessage("again")])
        assert.deepStrictEqual(yield* store.loadHistory("other"), [userMessage("elsewhere")])
        // With a limit: the most recent messages, still oldest first.
        assert.deepStrictEqual(yield* store.loadHistory("s", 1), [userMessage("again")])
        assert.deepStrictEqual(yield* store.loadHistory("s", 100), yield* store.loadHistory("s"))
        assert.deepStrictEqual(yield* store.loadHistory("s", 0), [])
      })
    )

    test(
      "an append that does not wait is still stored before every later write",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        yield* store.appendHistory("s", [userMessage("input")], { wait: false })
        yield* store.appendHistory("s", [assistantMessage("reply")])
        assert.deepStrictEqual(yield* store.loadHistory("s"), [userMessage("input"), assistantMessage("reply")])
      })
    )

    test(
      "stored responses with input items and events",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        const response: StateStore.StoredResponse = {
          id: "resp_1",
          sessionKey: "k",
          response: { id: "resp_1", output: [{ type: "message", content: [{ text: "hi" }] }], n: 1.5, ok: null },
          inputItems: [{ type: "message", role: "user", content: "hello" }],
          createdAt: at(1000)
        }
        yield* store.putResponse(response)
        yield* store.putResponse({
          id: "resp_2",
          sessionKey: undefined,
          response: "x",
          inputItems: [],
          createdAt: at(5000)
        })
        assert.deepStrictEqual(yield* store.getResponse("resp_1"), Option.some(response))
        assert.deepStrictEqual(
          Option.map(yield* store.getResponse("resp_2"), (r) => r.sessionKey),
          Option.some(undefined)
        )
        assert.isTrue(Option.isNone(yield* store.getResponse("missing")))

        yield* store.appendResponseEvents("resp_1", [{ sequence: 1, event: { type: "a" } }, {
          sequence: 2,
          event: { type: "b" }
        }])
        yield* store.appendResponseEvents("resp_1", [{ sequence: 3, event: { type: "c" } }])
        assert.deepStrictEqual(yield* store.responseEvents("resp_1", 0), [
          { sequence: 1, event: { type: "a" } },
          { sequence: 2, event: { type: "b" } },
          { sequence: 3, event: { type: "c" } }
        ])
        assert.deepStrictEqual(yield* store.responseEvents("resp_1", 2), [{ sequence: 3, event: { type: "c" } }])
        assert.deepStrictEqual(yield* store.responseEvents("missing", 0), [])
        // a sequence written twice (a retried write) is stored once, the latest wins
        yield* store.appendResponseEvents("resp_1", [{ sequence: 3, event: { type: "c2" } }])
        assert.deepStrictEqual(yield* store.responseEvents("resp_1", 2), [{ sequence: 3, event: { type: "c2" } }])

        assert.isTrue(yield* store.deleteResponse("resp_1"))
        assert.isFalse(yield* store.deleteResponse("resp_1"))
        assert.isTrue(Option.isNone(yield* store.getResponse("resp_1")))
        assert.deepStrictEqual(yield* store.responseEvents("resp_1", 0), [])
      })
    )

    test(
      "pruning deletes responses (and their events) created before the cutoff",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        const put = (id: string, createdAt: number) =>
          store.putResponse({ id, sessionKey: "k", response: { id }, inputItems: [], createdAt: at(createdAt) })
        yield* put("old1", 100)
        yield* put("old2", 199)
        yield* put("new", 200)
        yield* store.appendResponseEvents("old1", [{ sequence: 1, event: "e" }])
        assert.strictEqual(yield* store.pruneResponses(at(200)), 2)
        assert.isTrue(Option.isNone(yield* store.getResponse("old1")))
        assert.deepStrictEqual(yield* store.responseEvents("old1", 0), [])
        assert.isTrue(Option.isSome(yield* store.getResponse("new")))
        assert.strictEqual(yield* store.pruneResponses(at(200)), 0)
      })
    )

    test(
      "responses by wire status, oldest first (what startup ends after a crash)",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        const put = (id: string, status: unknown, createdAt: number) =>
          store.putResponse({ id, sessionKey: "k", response: { id, status }, inputItems: [], createdAt: at(createdAt) })
        yield* put("b", "in_progress", 20)
        yield* put("a", "queued", 10)
        yield* put("c", "completed", 5)
        yield* put("d", 42, 1)
        yield* store.putResponse({ id: "e", sessionKey: "k", response: "text", inputItems: [], createdAt: at(2) })
        const ids = (statuses: ReadonlyArray<string>) =>
          Effect.map(store.responsesWithStatus(statuses), (found) => found.map((r) => r.id))
        assert.deepStrictEqual(yield* ids(["queued", "in_progress"]), ["a", "b"])
        assert.deepStrictEqual(yield* ids(["completed"]), ["c"])
        assert.deepStrictEqual(yield* ids([]), [])
        yield* put("b", "incomplete", 20)
        assert.deepStrictEqual(yield* ids(["queued", "in_progress"]), ["a"])
      })
    )

    test(
      "identity links",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        const link = (channel: string, nativeId: string, linkedAt: number): StateStore.IdentityLink => ({
          channel,
          nativeId,
          isolationKey: "person:1",
          subject: "sub-1",
          claims: { email: "a@example.com", groups: ["x"] },
          linkedAt: at(linkedAt)
        })
        yield* store.putLink(link("telegram", "1", 10))
        yield* store.putLink(link("teams", "t", 20))
        yield* store.putLink({ ...link("webchat", "w", 5), isolationKey: "person:2" })
        assert.deepStrictEqual(yield* store.getLink("teams", "t"), Option.some(link("teams", "t", 20)))
        assert.isTrue(Option.isNone(yield* store.getLink("teams", "nobody")))
        assert.deepStrictEqual(yield* store.linksFor("person:1"), [link("telegram", "1", 10), link("teams", "t", 20)])
        // relinking replaces
        yield* store.putLink({ ...link("telegram", "1", 30), subject: "sub-2" })
        assert.deepStrictEqual(
          (yield* store.linksFor("person:1")).map((l) => [l.channel, l.subject]),
          [["teams", "sub-1"], ["telegram", "sub-2"]]
        )
        assert.isTrue(yield* store.deleteLink("teams", "t"))
        assert.isFalse(yield* store.deleteLink("teams", "t"))
        assert.strictEqual((yield* store.linksFor("person:1")).length, 1)
      })
    )

    test(
      "cursors and seen ids",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.isTrue(Option.isNone(yield* store.getCursor("telegram")))
        yield* store.setCursor("telegram", "41")
        yield* store.setCursor("telegram", "42")
        assert.deepStrictEqual(yield* store.getCursor("telegram"), Option.some("42"))
        assert.isTrue(yield* store.markSeen("telegram", "u1"))
        assert.isFalse(yield* store.markSeen("telegram", "u1"))
        assert.isTrue(yield* store.markSeen("teams", "u1"))
      })
    )

    test(
      "quarantine records",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.deepStrictEqual(yield* store.quarantined, [])
        const record = { table: "tasks", key: "t1", reason: "bad payload", raw: "{", at: at(7) }
        yield* store.quarantine(record)
        assert.deepStrictEqual(yield* store.quarantined, [record])
      })
    )
  })

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
