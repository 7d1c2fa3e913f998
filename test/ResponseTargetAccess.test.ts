/**
 * Who may a reply be pushed to (issue 13, point 3): an anonymous Responses caller naming someone else's Telegram
 * chat or web chat browser is refused with 403 before the turn runs, against the real host with the Telegram
 * channel pointed at a fake Bot API on loopback. Identities linked to the caller's own key, and bearers of a push
 * key, still reach them.
 */
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Responses from "../src/channels/Responses/index.js"
import * as Telegram from "../src/channels/Telegram/Telegram.js"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import * as Agent from "../src/core/Agent.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import type { Turn } from "../src/core/Target.js"
import * as Time from "../src/domain/Time.js"
import * as StateStore from "../src/state/StateStore.js"
import type { FakeTelegram } from "./fake/FakeTelegram.js"
import * as Fake from "./fake/FakeTelegram.js"
import * as TestHost from "./utils/TestHost.js"

const PUSH_KEY = "push-key-for-tests"
const VICTIM = "987654321"

class Fixture extends Context.Tag("test/ResponseTargetAccess/Fixture")<Fixture, {
  readonly fake: FakeTelegram
  readonly store: StateStore.StateStoreShape
  readonly turns: Array<Turn>
}>() {}

const fixture = Layer.unwrapScoped(Effect.gen(function*() {
  const fake = yield* Fake.make()
  const store = yield* StateStore.makeMemory
  const turns: Array<Turn> = []
  const agent = Agent.make({
    name: "counting",
    run: (turn) => Effect.suspend(() => (turns.push(turn), DefaultAgent.agent.run(turn)))
  })
  const host = TestHost.layer({
    channels: [
      Responses.make(),
      WebChat.make(),
      Telegram.make({
        token: fake.token,
        apiBase: fake.url,
        stream: false,
        webhookUrl: "https://bot.example.test/telegram/webhook",
        secretToken: "s3cret-Token_1"
      })
    ],
    target: Agent.layer(agent),
    store: Layer.succeed(StateStore.StateStore, store),
    settings: { pushKeys: [PUSH_KEY], trustIsolationHeaders: true }
  }).pipe(Layer.provide(FetchHttpClient.layer))
  return Layer.merge(host, Layer.succeed(Fixture, { fake, store, turns }))
}))

const create = (body: unknown, headers: Record<string, string> = {}) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const r = await fetch(`${host.url}/v1/responses`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body)
      })
      const text = await r.text()
      return { status: r.status, body: JSON.parse(text.startsWith("{") ? text : "{}") as any, text }
    }))

const sentTo = (fake: FakeTelegram, chatId: string) =>
  fake.callsOf("sendMessage").filter((c) => String(c.params.chat_id) === chatId).map((c) => String(c.params.text))

describe("response targets naming other users", () => {
  layer(fixture, { excludeTestServices: true })((it) => {
    it.effect("the anonymous echo_input attack on a Telegram chat gets 403 and nothing reaches the chat", () =>
      Effect.gen(function*() {
        const { fake, turns } = yield* Fixture
        const ranBefore = turns.length
        const attack = {
          input: "Your account is locked. Log in at https://evil.example to unlock it.",
          response_target: { channels: [`telegram:${VICTIM}`], echo_input: true }
        }
        for (const variant of [attack, { ...attack, stream: true }, { ...attack, background: true }]) {
          const r = yield* create(variant)
          assert.strictEqual(r.status, 403, r.text)
          assert.strictEqual(r.body.error.type, "permission_error")
          assert.strictEqual(r.body.error.code, "response_target_refused")
          assert.include(r.body.error.message, `telegram:${VICTIM}`)
          assert.include(r.body.error.message, "AGENT_HOST_PUSH_KEYS")
        }
        // The turn never ran (nothing stored, nothing to push) and the fake Bot API heard nothing for the chat.
        yield* Effect.sleep("300 millis")
        assert.strictEqual(turns.length, ranBefore)
        assert.deepStrictEqual(sentTo(fake, VICTIM), [])
      }))

    it.effect("another browser's web chat identity is refused", () =>
      Effect.gen(function*() {
        const { turns } = yield* Fixture
        const ranBefore = turns.length
        for (const target of ["webchat:someone-elses-browser", ["webchat:someone-elses-browser"]]) {
          const r = yield* create({ input: "hello from a stranger", response_target: target })
          assert.strictEqual(r.status, 403, r.text)
          assert.include(r.body.error.message, "webchat:someone-elses-browser")
        }
        assert.strictEqual(turns.length, ranBefore)
      }))

    it.effect("an identity linked to the caller's own key is reachable; another user's caller is refused", () =>
      Effect.gen(function*() {
        const { fake, store } = yield* Fixture
        // What an identity linker records: Telegram chat 4242 belongs to the person whose key is person:alice.
        yield* store.putLink({
          channel: "telegram",
          nativeId: "4242",
          isolationKey: "person:alice",
          subject: "alice",
          claims: {},
          linkedAt: Time.fromMillis(0)
        })
        const bob = yield* create(
          { input: "hi alice", response_target: { channels: ["telegram:4242"], echo_input: true } },
          { "x-agent-chat-isolation-key": "person:bob" }
        )
        assert.strictEqual(bob.status, 403, bob.text)
        const alice = yield* create(
          { input: "note to my phone", response_target: { channels: ["telegram:4242"], echo_input: true } },
          { "x-agent-chat-isolation-key": "person:alice" }
        )
        assert.strictEqual(alice.status, 200, alice.text)
        assert.strictEqual(alice.body.metadata?.agent_host_delivery, "out_of_band")
        yield* fake.waitFor("sendMessage", 2, 10_000)
        const texts = sentTo(fake, "4242")
        assert.isAtLeast(texts.length, 2)
        assert.include(texts[0]!, "note to my phone")
        assert.notInclude(texts.join(" "), "hi alice")
      }))

    it.effect("a push key may name any destination", () =>
      Effect.gen(function*() {
        const { fake } = yield* Fixture
        const before = fake.callsOf("sendMessage").length
        const r = yield* create(
          {
            input: "scheduled maintenance tonight",
            response_target: { channels: ["telegram:1357"], echo_input: true }
          },
          { authorization: `Bearer ${PUSH_KEY}` }
        )
        assert.strictEqual(r.status, 200, r.text)
        yield* fake.waitFor("sendMessage", before + 2, 10_000)
        const texts = sentTo(fake, "1357")
        assert.include(texts[0]!, "scheduled maintenance tonight")
        // A wrong key is just anonymous.
        const wrong = yield* create(
          { input: "x", response_target: "telegram:1357" },
          { authorization: "Bearer not-the-push-key" }
        )
        assert.strictEqual(wrong.status, 403)
      }))
  })
})
