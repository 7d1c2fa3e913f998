/**
 * The ConversationStore contract against memory, SQLite (a real database in a temporary directory) and Postgres (a
 * database per test on the run's private server), plus a reopen of the SQLite and Postgres stores.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import * as Time from "../src/domain/Time.js"
import type { ConversationItem } from "../src/state/ConversationStore.js"
import * as ConversationStore from "../src/state/ConversationStore.js"
import * as PgConversationStore from "../src/state/postgres/PgConversationStore.js"
import * as SqliteConversationStore from "../src/state/sqlite/SqliteConversationStore.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as Postgres from "./utils/Postgres.js"
import * as TempDir from "./utils/TempDir.js"

const at = Time.fromMillis
const msg = (id: string, text = id): ConversationItem => ({
  id,
  type: "message",
  role: "user",
  status: "completed",
  content: [{ type: "input_text", text }]
})
const ids = (items: ReadonlyArray<ConversationItem>) => items.map((i) => i.id)

const sqliteOn = (directory: string) =>
  SqliteConversationStore.layerWithoutDb.pipe(Layer.provide(StateDb.layer({ directory })))
const pgOn = (url: string) => PgConversationStore.layer({ url: Redacted.make(url), maxConnections: 4 })

const layers: ReadonlyArray<readonly [string, () => Layer.Layer<ConversationStore.ConversationStore, unknown>]> = [
  ["memory", () => ConversationStore.layerMemory],
  ["sqlite", () => Layer.unwrapScoped(Effect.map(TempDir.make(), sqliteOn))],
  ["postgres", () => Layer.unwrapScoped(Effect.map(Postgres.database, pgOn))]
]

for (const [name, makeLayer] of layers) {
  describe(`ConversationStore contract: ${name}`, () => {
    const test = (title: string, body: Effect.Effect<void, never, ConversationStore.ConversationStore>) =>
      it.scoped(title, () => Effect.provide(body, makeLayer()))

    test(
      "create, get, metadata, delete",
      Effect.gen(function*() {
        const store = yield* ConversationStore.ConversationStore
        const created = yield* store.create({
          id: "conv_a",
          userKey: "alice",
          metadata: { topic: "x" },
          createdAt: at(1000),
          items: [msg("i1"), msg("i2")]
        })
        assert.deepStrictEqual(created, {
          id: "conv_a",
          userKey: "alice",
          metadata: { topic: "x" },
          createdAt: at(1000),
          updatedAt: at(1000),
          revision: 0,
          itemCount: 2
        })
        yield* store.create({ id: "conv_b", metadata: {}, createdAt: at(1001), items: [] })
        const b = Option.getOrThrow(yield* store.get("conv_b"))
        assert.isUndefined(b.userKey)
        assert.strictEqual(b.itemCount, 0)
        const updated = Option.getOrThrow(yield* store.setMetadata("conv_a", { topic: "y", n: "1" }, at(2000)))
        assert.deepStrictEqual(updated.metadata, { topic: "y", n: "1" })
        assert.strictEqual(updated.updatedAt, at(2000))
        assert.strictEqual(updated.revision, 0, "metadata is not an item change")
        assert.isTrue(Option.isNone(yield* store.setMetadata("conv_nope", {}, at(2000))))
        assert.isTrue(yield* store.delete("conv_a"))
        assert.isFalse(yield* store.delete("conv_a"))
        assert.isTrue(Option.isNone(yield* store.get("conv_a")))
        assert.isTrue(Option.isNone(yield* store.getItem("conv_a", "i1")), "items go with it")
        assert.isTrue(Option.isSome(yield* store.get("conv_b")))
      })
    )

    test(
      "items: append with a bound, list both ways with a cursor, get, delete",
      Effect.gen(function*() {
        const store = yield* ConversationStore.ConversationStore
        yield* store.create({ id: "c", metadata: {}, createdAt: at(1), items: [msg("i0")] })
        const appended = yield* store.appendItems("c", [msg("i1"), msg("i2"), msg("i3")], { at: at(5), maxItems: 4 })
        assert.strictEqual(appended._tag, "Appended")
        if (appended._tag === "Appended") {
          assert.strictEqual(appended.conversation.itemCount, 4)
          assert.strictEqual(appended.conversation.revision, 1)
          assert.strictEqual(appended.conversation.updatedAt, at(5))
        }
        assert.deepStrictEqual(yield* store.appendItems("c", [msg("i4")], { at: at(6), maxItems: 4 }), {
          _tag: "Full",
          itemCount: 4
        })
        assert.deepStrictEqual(yield* store.appendItems("nope", [msg("x")], { at: at(6) }), { _tag: "Missing" })

        const page = (order: "asc" | "desc", limit: number, after?: string) =>
          Effect.map(store.listItems("c", { order, limit, after }), (r) => {
            if (r._tag !== "Page") return r._tag
            return { ids: ids(r.items), more: r.hasMore }
          })
        assert.deepStrictEqual(yield* page("asc", 2), { ids: ["i0", "i1"], more: true })
        assert.deepStrictEqual(yield* page("asc", 2, "i1"), { ids: ["i2", "i3"], more: false })
        assert.deepStrictEqual(yield* page("desc", 3), { ids: ["i3", "i2", "i1"], more: true })
        assert.deepStrictEqual(yield* page("desc", 3, "i1"), { ids: ["i0"], more: false })
        assert.deepStrictEqual(yield* page("desc", 3, "i0"), { ids: [], more: false })
        assert.strictEqual(yield* page("asc", 2, "zzz"), "AfterNotFound")
        assert.deepStrictEqual(ids(yield* store.recentItems("c", 2)), ["i2", "i3"])
        assert.deepStrictEqual(ids(yield* store.recentItems("c", 10)), ["i0", "i1", "i2", "i3"])

        assert.deepStrictEqual(yield* store.getItem("c", "i2"), Option.some(msg("i2")))
        assert.isTrue(Option.isNone(yield* store.getItem("c", "i9")))
        const after = Option.getOrThrow(yield* store.deleteItem("c", "i1", at(9)))
        assert.strictEqual(after.itemCount, 3)
        assert.strictEqual(after.revision, 2)
        assert.isTrue(Option.isNone(yield* store.deleteItem("c", "i1", at(9))))
        assert.isTrue(Option.isNone(yield* store.deleteItem("nope", "i0", at(9))))
        assert.deepStrictEqual(yield* page("asc", 10), { ids: ["i0", "i2", "i3"], more: false })
        // appends after a delete keep the order
        yield* store.appendItems("c", [msg("i5")], { at: at(10) })
        assert.deepStrictEqual(yield* page("asc", 10), { ids: ["i0", "i2", "i3", "i5"], more: false })
      })
    )

    test(
      "the mirror: set by an append at an unchanged revision, claimed once, lost on any item change",
      Effect.gen(function*() {
        const store = yield* ConversationStore.ConversationStore
        yield* store.create({ id: "c", metadata: {}, createdAt: at(1), items: [] })
        // a turn that saw revision 0 in session s1
        const first = yield* store.appendItems("c", [msg("a")], {
          at: at(2),
          mirror: { sessionKey: "s1", ifRevision: 0 }
        })
        assert.deepStrictEqual(first._tag === "Appended" && first.conversation.mirror, {
          sessionKey: "s1",
          revision: 1
        })
        assert.isFalse(yield* store.claimMirror("c", "s2", 1), "another session")
        assert.isFalse(yield* store.claimMirror("c", "s1", 0), "an old revision")
        assert.isTrue(yield* store.claimMirror("c", "s1", 1))
        assert.isFalse(yield* store.claimMirror("c", "s1", 1), "claimed once")
        // the claiming turn ends: its append revalidates
        yield* store.appendItems("c", [msg("b")], { at: at(3), mirror: { sessionKey: "s1", ifRevision: 1 } })
        assert.isTrue(yield* store.claimMirror("c", "s1", 2))
        yield* store.appendItems("c", [msg("c")], { at: at(3), mirror: { sessionKey: "s1", ifRevision: 2 } })
        // an append by another turn that started at an older revision does not take the mirror
        const late = yield* store.appendItems("c", [msg("d")], {
          at: at(4),
          mirror: { sessionKey: "s9", ifRevision: 1 }
        })
        assert.isTrue(late._tag === "Appended" && late.conversation.mirror?.sessionKey === "s1")
        assert.isFalse(yield* store.claimMirror("c", "s1", 4), "s1 lacks d")
        // a fresh mirror, then an item deleted through the API
        yield* store.appendItems("c", [msg("e")], { at: at(5), mirror: { sessionKey: "s3", ifRevision: 4 } })
        yield* store.deleteItem("c", "a", at(6))
        assert.isFalse(yield* store.claimMirror("c", "s3", 6))
        // dropMirror: only for the session it names
        yield* store.appendItems("c", [], { at: at(7), mirror: { sessionKey: "s4", ifRevision: 6 } })
        yield* store.dropMirror("c", "s3")
        assert.isTrue(yield* store.claimMirror("c", "s4", 7))
        yield* store.appendItems("c", [], { at: at(7), mirror: { sessionKey: "s4", ifRevision: 7 } })
        yield* store.dropMirror("c", "s4")
        assert.isFalse(yield* store.claimMirror("c", "s4", 8))
      })
    )

    test(
      "prune by last change",
      Effect.gen(function*() {
        const store = yield* ConversationStore.ConversationStore
        yield* store.create({ id: "old", metadata: {}, createdAt: at(1000), items: [msg("x")] })
        yield* store.create({ id: "touched", metadata: {}, createdAt: at(1000), items: [] })
        yield* store.create({ id: "new", metadata: {}, createdAt: at(5000), items: [] })
        yield* store.appendItems("touched", [msg("y")], { at: at(6000) })
        assert.strictEqual(yield* store.prune(at(3000)), 1)
        assert.isTrue(Option.isNone(yield* store.get("old")))
        assert.isTrue(Option.isNone(yield* store.getItem("old", "x")))
        assert.isTrue(Option.isSome(yield* store.get("touched")))
        assert.isTrue(Option.isSome(yield* store.get("new")))
      })
    )
  })
}

describe("ConversationStore persistence", () => {
  const survives = (open: Layer.Layer<ConversationStore.ConversationStore, unknown>) =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.provide(
        Effect.flatMap(ConversationStore.ConversationStore, (store) =>
          Effect.zipRight(
            store.create({ id: "c", userKey: "u", metadata: { k: "v" }, createdAt: at(1), items: [msg("a")] }),
            store.appendItems("c", [msg("b")], { at: at(2), mirror: { sessionKey: "s", ifRevision: 0 } })
          )),
        open
      ))
      yield* Effect.scoped(Effect.provide(
        Effect.gen(function*() {
          const store = yield* ConversationStore.ConversationStore
          const c = Option.getOrThrow(yield* store.get("c"))
          assert.deepStrictEqual(c.mirror, { sessionKey: "s", revision: 1 })
          assert.strictEqual(c.userKey, "u")
          assert.deepStrictEqual(ids(yield* store.recentItems("c", 10)), ["a", "b"])
        }),
        open
      ))
    })

  it.scoped("SQLite: a reopened database keeps conversations, items and the mirror", () =>
    Effect.flatMap(TempDir.make(), (dir) => survives(sqliteOn(dir))))

  it.scoped("Postgres: a new pool on the same database keeps them", () =>
    Effect.flatMap(Postgres.database, (url) => survives(pgOn(url))))
})
