/**
 * One contract for every StateStore implementation: memory and SQLite (test/StateStore.test.ts), Postgres
 * (test/PgStateStore.test.ts). Each test gets a fresh store from `makeLayer`.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Layer } from "effect"
import { Duration, Effect, Option, TestClock } from "effect"
import type { ChannelIdentity } from "../../src/domain/Identity.js"
import { ChannelName } from "../../src/domain/Ids.js"
import type { Message } from "../../src/domain/Message.js"
import { assistantMessage, userMessage } from "../../src/domain/Message.js"
import * as Time from "../../src/domain/Time.js"
import * as StateStore from "../../src/state/StateStore.js"

export const ident = (channel: string, nativeId: string, attributes?: Record<string, unknown>): ChannelIdentity =>
  attributes === undefined ?
    { channel: ChannelName.make(channel), nativeId } :
    { channel: ChannelName.make(channel), nativeId, attributes }

export const at = Time.fromMillis

export const contract = (name: string, makeLayer: () => Layer.Layer<StateStore.StateStore, unknown>) =>
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
        // given its JSON text too (a channel that served it as the body), it reads back the same, without the text
        const { id: _, ...rest } = response
        yield* store.putResponse({ ...rest, id: "resp_3", responseJson: JSON.stringify(response.response) })
        assert.deepStrictEqual(yield* store.getResponse("resp_3"), Option.some({ ...rest, id: "resp_3" }))
        // and a status query finds it by the status in that text
        yield* store.putResponse({
          ...rest,
          id: "resp_4",
          response: { id: "resp_4", status: "queued" },
          responseJson: JSON.stringify({ id: "resp_4", status: "queued" })
        })
        assert.deepStrictEqual(
          (yield* store.responsesWithStatus(["queued"])).map((r) => r.id),
          ["resp_4"]
        )
        assert.isTrue(yield* store.deleteResponse("resp_4"))

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
        assert.isTrue(yield* store.markSeen("telegram", "u1", Duration.hours(1)))
        assert.isFalse(yield* store.markSeen("telegram", "u1", Duration.hours(1)))
        assert.isTrue(yield* store.markSeen("teams", "u1", Duration.hours(1)))
      })
    )

    test(
      "a seen id is a duplicate for its window, new after it (pruned or not), and renewed then",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        assert.isTrue(yield* store.markSeen("n", "a", Duration.minutes(1)))
        yield* TestClock.adjust(Duration.seconds(60))
        // the window's last instant still counts
        assert.isFalse(yield* store.markSeen("n", "a", Duration.minutes(1)))
        yield* TestClock.adjust(Duration.millis(1))
        assert.isTrue(yield* store.markSeen("n", "a", Duration.minutes(1)))
        assert.isFalse(yield* store.markSeen("n", "a", Duration.minutes(1)))
        // a duplicate does not extend the window it hit
        yield* TestClock.adjust(Duration.seconds(61))
        assert.isTrue(yield* store.markSeen("n", "a", Duration.minutes(1)))
      })
    )

    test(
      "pruneSeen deletes expired ids only, at most `limit` per call",
      Effect.gen(function*() {
        const store = yield* StateStore.StateStore
        for (const id of ["a", "b", "c"]) yield* store.markSeen("n", id, Duration.minutes(1))
        yield* store.markSeen("m", "d", Duration.hours(1))
        const later = Time.plus(yield* Time.now, Duration.minutes(2))
        assert.strictEqual(yield* store.pruneSeen(later, 2), 2)
        assert.strictEqual(yield* store.pruneSeen(later, 2), 1)
        assert.strictEqual(yield* store.pruneSeen(later, 2), 0)
        // within its window: kept, still a duplicate
        assert.isFalse(yield* store.markSeen("m", "d", Duration.hours(1)))
        assert.strictEqual(yield* store.pruneSeen(Time.plus(later, Duration.hours(1)), 10), 1)
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
