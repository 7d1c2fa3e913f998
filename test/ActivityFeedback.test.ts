/**
 * Feedback on replies is stored under the rated response, survives a restart on the same SQLite state, reaches the
 * `onFeedback` hook, and is served to admins: Teams' thumbs (`message/submitAction`, naming the rated message) and
 * the feedback card's submit elsewhere (naming the response). Ratings of replies the conversation never got are
 * dropped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import type { Feedback } from "../src/channels/Activity/Feedback.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"
import * as TempDir from "./utils/TempDir.js"

const ADMIN_KEY = "activity-admin-key"

const getFeedback = (hostUrl: string, responseId: string, key: string | null) =>
  Effect.promise(() =>
    fetch(`${hostUrl}/api/feedback/${encodeURIComponent(responseId)}`, {
      headers: key === null ? {} : { authorization: `Bearer ${key}` }
    }).then(async (r) => ({ status: r.status, body: await r.json() as Record<string, unknown> }))
  )

const replies = (fake: Fake.FakeBotFramework) => fake.sent().filter((c) => c.body.type === "message")

describe("Activity channel: feedback", () => {
  it.scoped("ratings are stored per response, survive a restart, reach the hook and the admin route", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_780_000_000_000)
      const dir = yield* TempDir.make("activity-feedback-")
      const fake = yield* Fake.make()
      const hooked: Array<Feedback> = []
      const start = Harness.start({
        fake,
        store: SqliteStateStore.layer({ directory: dir }).pipe(Layer.orDie),
        settings: { adminKeys: [ADMIN_KEY] },
        options: { stream: false, onFeedback: (feedback) => Effect.sync(() => void hooked.push(feedback)) }
      })

      const { teamsResponse, webChatResponse } = yield* Effect.scoped(Effect.gen(function*() {
        const h = yield* start
        // Teams: native buttons; the rating names the reply's activity id.
        yield* h.send(Fake.message(fake, "first"))
        yield* fake.waitUntil(() => replies(fake).length === 1)
        const reply = replies(fake)[0]!
        assert.deepStrictEqual(reply.body.channelData, { feedbackLoopEnabled: true })
        const invoke = (replyToId: string, reaction: string, feedback: string, from?: Record<string, unknown>) =>
          h.send({
            ...Fake.message(fake, ""),
            type: "invoke",
            name: "message/submitAction",
            replyToId,
            value: { actionName: "feedback", actionValue: { reaction, feedback } },
            ...(from === undefined ? {} : { from })
          })
        const first = yield* invoke(reply.answer!.id!, "like", "{\"feedbackText\":\"\"}")
        assert.strictEqual(first.status, 200)
        assert.deepStrictEqual(JSON.parse(first.body), {})
        // The same person changes their mind: the later rating replaces the earlier one.
        yield* invoke(reply.answer!.id!, "dislike", JSON.stringify({ feedbackText: "too short" }))
        // Someone else in the conversation.
        yield* invoke(reply.answer!.id!, "like", "{}", { id: "29:user-3", aadObjectId: "aad-user-3" })
        // A message id the bot never sent: dropped.
        yield* invoke("activity-999", "like", "{}")

        // Web Chat: the feedback card, whose data names the response.
        yield* h.send(Fake.message(fake, "second", { channelId: "webchat", conversation: { id: "wc-1" } }))
        yield* fake.waitUntil(() => replies(fake).length === 2)
        const card = (replies(fake)[1]!.body.attachments as Array<{ content: { actions: Array<{ data: unknown }> } }>)
          .at(-1)!
        const data = card.content.actions[1]!.data as Record<string, unknown>
        const submit = (conversation: string) =>
          h.send(Fake.message(fake, "", { channelId: "webchat", conversation: { id: conversation }, value: data }))
        assert.strictEqual((yield* submit("wc-1")).status, 202)
        // The same data posted in another conversation is not a rating of that response.
        assert.strictEqual((yield* submit("wc-other")).status, 202)
        yield* fake.waitUntil(() => hooked.length === 4)
        // A rating is not a turn.
        assert.strictEqual(h.turns.length, 2)
        return {
          teamsResponse: h.turns[0]!.context.responseId!,
          webChatResponse: h.turns[1]!.context.responseId!
        }
      }))
      assert.strictEqual(hooked.length, 4)
      assert.deepStrictEqual(
        hooked.map((f) => [f.responseId, f.reaction, f.comment]),
        [
          [teamsResponse, "like", undefined],
          [teamsResponse, "dislike", "too short"],
          [teamsResponse, "like", undefined],
          [webChatResponse, "dislike", undefined]
        ]
      )

      // A new host on the same state file serves what was stored.
      const h = yield* start
      const teams = yield* getFeedback(h.host.url, teamsResponse, ADMIN_KEY)
      assert.strictEqual(teams.status, 200)
      assert.deepStrictEqual(teams.body, {
        response_id: teamsResponse,
        feedback: [
          {
            reaction: "dislike",
            comment: "too short",
            user_id: "aad-user-1",
            conversation_id: "a:conv-1",
            activity_id: replies(fake)[0]!.answer!.id!,
            created_at: 1_780_000_000_000
          },
          {
            reaction: "like",
            comment: null,
            user_id: "aad-user-3",
            conversation_id: "a:conv-1",
            activity_id: replies(fake)[0]!.answer!.id!,
            created_at: 1_780_000_000_000
          }
        ]
      })
      const webChat = yield* getFeedback(h.host.url, webChatResponse, ADMIN_KEY)
      assert.deepStrictEqual(
        (webChat.body.feedback as Array<Record<string, unknown>>).map((f) => [f.reaction, f.conversation_id]),
        [["dislike", "wc-1"]]
      )
      assert.deepStrictEqual((yield* getFeedback(h.host.url, "activity_unknown", ADMIN_KEY)).body.feedback, [])
      assert.strictEqual((yield* getFeedback(h.host.url, teamsResponse, null)).status, 401)
      assert.strictEqual((yield* getFeedback(h.host.url, teamsResponse, "wrong")).status, 401)
    }))

  it.scoped("without an admin key the feedback route is not mounted", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_780_000_000_000)
      const h = yield* Harness.start()
      assert.strictEqual((yield* getFeedback(h.host.url, "activity_x", null)).status, 404)
    }))
})
