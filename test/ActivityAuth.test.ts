/**
 * The Activity channel's inbound checks: a valid Bot Framework (or tenant Entra) token gets the agent's reply
 * through the connector; every bad token is refused with 401/403 JSON and the agent never runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"

// Tokens are signed and checked at the test clock's time: a plausible one, so `iat`s look real.
const atRealTime = TestClock.setTime(1_780_000_000_000)

describe("Activity channel: inbound authentication", () => {
  it.scoped("a valid token: acknowledged at once, the reply arrives at the connector as a reply", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const h = yield* Harness.start()
      const activity = Fake.message(h.fake, "hello")
      const res = yield* h.send(activity)
      assert.strictEqual(res.status, 202)
      yield* h.fake.waitUntil(() => h.fake.sent().some((c) => c.body.type === "message"))
      const message = h.fake.sent().find((c) => c.body.type === "message")!
      assert.strictEqual(message.conversationId, "a:conv-1")
      assert.strictEqual(message.replyToId, activity.id)
      assert.strictEqual(message.body.text, "echo: hello (history 0)")
      assert.match(message.authorization ?? "", /^Bearer connector-token-1-/)
      assert.deepStrictEqual(message.body.channelData, { feedbackLoopEnabled: true })
      assert.strictEqual(h.turns.length, 1)
      const turn = h.turns[0]!
      assert.strictEqual(turn.sessionId, "activity:a:conv-1")
      assert.strictEqual(turn.context.identity?.nativeId, "aad-user-1")
    }))

  it.scoped("bad tokens are refused and the agent never runs", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const h = yield* Harness.start()
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const cases: Array<readonly [string, Effect.Effect<string | null>, number]> = [
        ["missing header", Effect.succeed(null), 401],
        ["not a JWT", Effect.succeed("not-a-jwt"), 401],
        ["forged signature", h.fake.sign({ key: "rogue", kid: "bf-key-1" }), 401],
        ["wrong audience", h.fake.sign({ claims: { aud: "someone-else" } }), 401],
        ["expired", h.fake.sign({ now: now - 7200 }), 401],
        ["not yet valid", h.fake.sign({ claims: { nbf: now + 900 } }), 401],
        ["wrong issuer", h.fake.sign({ claims: { iss: "https://evil.example" } }), 401],
        ["unknown kid", h.fake.sign({ key: "rogue" }), 401],
        ["no serviceurl claim", h.fake.sign({ claims: { serviceurl: undefined } }), 401],
        ["serviceurl mismatch", h.fake.sign({ claims: { serviceurl: "https://smba.trafficmanager.net/emea/" } }), 403],
        ["entra key for the Bot Framework issuer", h.fake.sign({ key: "entra", kid: "bf-key-1" }), 401]
      ]
      for (const [name, token, status] of cases) {
        const res = yield* Effect.flatMap(token, (t) => h.post(Fake.message(h.fake, `case ${name}`), t))
        assert.strictEqual(res.status, status, name)
        const body = JSON.parse(res.body)
        assert.strictEqual(body.error.type, status === 401 ? "unauthorized" : "forbidden", name)
        assert.notInclude(res.body, "eyJ", name)
      }
      // Within the five minutes of skew: accepted.
      const skewed = yield* h.fake.sign({ now: now - 3600 - 120 })
      assert.strictEqual((yield* h.post(Fake.message(h.fake, "skewed"), skewed)).status, 202)
      yield* h.fake.waitUntil(() => h.turns.length === 1)
      assert.strictEqual(h.turns.length, 1)
    }))

  it.scoped("the key must be endorsed for the channel; the service URL must be allowlisted", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const fake = yield* Fake.make({ endorsements: ["webchat"] })
      const h = yield* Harness.start({ fake })
      const teams = yield* h.send(Fake.message(fake, "from teams"))
      assert.strictEqual(teams.status, 403)
      assert.include(JSON.parse(teams.body).error.message, "msteams")
      const webchat = yield* h.send(Fake.message(fake, "from webchat", { channelId: "webchat" }))
      assert.strictEqual(webchat.status, 202)
      yield* fake.waitUntil(() => h.turns.length === 1)

      // A valid token for a service URL that is not allowlisted cannot steer replies there.
      const other = yield* Harness.start({ fake, options: { serviceUrls: ["smba.trafficmanager.net"] } })
      const refused = yield* other.send(Fake.message(fake, "steer", { channelId: "webchat" }))
      assert.strictEqual(refused.status, 403)
      assert.include(JSON.parse(refused.body).error.message, "allowlist")
      assert.strictEqual(other.turns.length, 0)
    }))

  it.scoped("unknown kids refetch the keys (rollover), at most once per interval", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const h = yield* Harness.start()
      const fetchesAtStartup = h.fake.jwksFetches()
      const rogue = yield* h.fake.sign({ key: "rogue" })
      assert.strictEqual((yield* h.post(Fake.message(h.fake, "a"), rogue)).status, 401)
      assert.strictEqual((yield* h.post(Fake.message(h.fake, "b"), rogue)).status, 401)
      // Keys were fetched at startup; a forged kid within the interval does not refetch.
      assert.strictEqual(h.fake.jwksFetches(), fetchesAtStartup)
      yield* h.fake.rotate()
      yield* TestClock.adjust("31 seconds")
      const rotated = yield* h.fake.sign({ key: "rotated" })
      assert.strictEqual((yield* h.post(Fake.message(h.fake, "rotated"), rotated)).status, 202)
      assert.strictEqual(h.fake.jwksFetches(), fetchesAtStartup + 1)
      yield* h.fake.waitUntil(() => h.turns.length === 1)
    }))

  it.scoped("a single-tenant bot accepts its tenant's Entra tokens", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const h = yield* Harness.start()
      for (
        const iss of [
          `https://sts.windows.net/${Fake.TENANT_ID}/`,
          `https://login.microsoftonline.com/${Fake.TENANT_ID}/v2.0`
        ]
      ) {
        const token = yield* h.fake.sign({ key: "entra", claims: { iss, serviceurl: undefined } })
        assert.strictEqual((yield* h.post(Fake.message(h.fake, iss), token)).status, 202, iss)
      }
      const otherTenant = yield* h.fake.sign({ key: "entra", claims: { iss: "https://sts.windows.net/other/" } })
      assert.strictEqual((yield* h.post(Fake.message(h.fake, "x"), otherTenant)).status, 401)
      yield* h.fake.waitUntil(() => h.turns.length === 2)
    }))

  it.scoped("bad bodies are 4xx JSON", () =>
    Effect.gen(function*() {
      yield* atRealTime
      const h = yield* Harness.start()
      const token = yield* h.fake.sign()
      const badJson = yield* h.post("{nope", token)
      assert.strictEqual(badJson.status, 400)
      const notActivity = yield* h.post({ type: "message" }, token)
      assert.strictEqual(notActivity.status, 400)
      assert.strictEqual(JSON.parse(notActivity.body).error.type, "invalid_activity")
      const longKey = yield* h.post(Fake.message(h.fake, "x", { conversation: { id: "c".repeat(300) } }), token)
      assert.strictEqual(longKey.status, 400)
      assert.strictEqual(h.turns.length, 0)
    }))
})
