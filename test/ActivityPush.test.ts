/**
 * Push to Activity users across a restart: the host as `npm start` composes it (environment, SQLite state, durable
 * pushes), run twice in sequence on one state dir. Users write to the first; the second, asked by another channel
 * to reply to them, finds their conversation references and delivers: to the 1:1 chat, or to a new 1:1
 * conversation for a user who only wrote in a group.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { Turn } from "../src/core/Target.js"
import * as Server from "../src/Server.js"
import * as Fake from "./fake/FakeBotFramework.js"
import { echoAgent } from "./fake/TelegramHarness.js"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

const PUSH_KEY = "activity-push-key"

// PORT must be a real port number: ask the OS for a free one.
const startHost = (fake: Fake.FakeBotFramework, dir: string, turns: Array<Turn>) =>
  Effect.gen(function*() {
    const port = yield* ServerProcess.freePort
    const env = new Map([
      ["MICROSOFT_APP_ID", Fake.APP_ID],
      ["MICROSOFT_APP_PASSWORD", Fake.APP_PASSWORD],
      ["MICROSOFT_APP_TENANT_ID", Fake.TENANT_ID],
      ["ACTIVITY_OPENID_METADATA_URL", fake.metadataUrl],
      ["ACTIVITY_LOGIN_URL", fake.url],
      ["ACTIVITY_SERVICE_URLS", fake.url],
      ["ACTIVITY_STREAM", "false"],
      ["AGENT_HOST_STATE_DIR", dir],
      ["AGENT_HOST_PUSH_KEYS", PUSH_KEY],
      ["AGENT_HOST_WEBCHAT", "false"],
      ["PORT", String(port)],
      ["HOST", "127.0.0.1"]
    ])
    const layer = Server.layerFromEnvWith(Agent.layer(echoAgent(turns))).pipe(
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
    )
    const context = yield* Layer.build(layer).pipe(Effect.orDie)
    return Context.get(context, AgentHost)
  })

describe("Activity channel: push", () => {
  it.scopedLive("pushes to stored references after a restart (1:1, and a new 1:1 for a group-only user)", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const dir = yield* TempDir.make("activity-push-")
      const turns: Array<Turn> = []

      yield* Effect.scoped(Effect.gen(function*() {
        const host = yield* startHost(fake, dir, turns)
        const token = yield* fake.sign()
        assert.strictEqual((yield* Fake.post(host.url, Fake.message(fake, "hi"), token)).status, 202)
        const inGroup = Fake.message(fake, "hello all", {
          from: { id: "29:user-2", name: "Bo", aadObjectId: "aad-user-2" },
          conversation: { id: "19:group@thread.v2", conversationType: "groupChat", isGroup: true }
        })
        assert.strictEqual((yield* Fake.post(host.url, inGroup, token)).status, 202)
        yield* fake.waitUntil(() => fake.sent().filter((c) => c.body.type === "message").length === 2)
      }))
      const before = fake.calls.length

      const host = yield* startHost(fake, dir, turns)
      const push = (user: string) =>
        Effect.promise(() =>
          fetch(`${host.url}/v1/responses`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${PUSH_KEY}` },
            body: JSON.stringify({ input: `news for ${user}`, response_target: `activity:${user}` })
          }).then((r) => r.status)
        )
      assert.strictEqual(yield* push("aad-user-1"), 200)
      yield* fake.waitUntil(() => fake.calls.length > before, 10_000)
      const direct = fake.calls[before]!
      assert.strictEqual(direct.conversationId, "a:conv-1")
      assert.isUndefined(direct.replyToId)
      assert.strictEqual(direct.body.text, "echo: news for aad-user-1 (history 0)")

      assert.strictEqual(yield* push("aad-user-2"), 200)
      yield* fake.waitUntil(() => fake.calls.length >= before + 3, 10_000)
      const created = fake.calls[before + 1]!
      assert.strictEqual(created.path, "/v3/conversations")
      assert.deepStrictEqual(created.body.members, [{ id: "29:user-2" }])
      assert.deepStrictEqual(created.body.channelData, { tenant: { id: Fake.TENANT_ID } })
      const sent = fake.calls[before + 2]!
      assert.match(sent.conversationId ?? "", /^a:created-/)
      assert.strictEqual(sent.body.text, "echo: news for aad-user-2 (history 0)")

      // Nobody by that name has written: the turn is answered, the push is refused (nothing reaches the connector).
      const calls = fake.calls.length
      assert.strictEqual(yield* push("aad-stranger"), 200)
      assert.strictEqual(fake.calls.length, calls)
    }))
})
