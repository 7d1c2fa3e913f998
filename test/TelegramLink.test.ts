import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import * as StateStoreModule from "../src/state/StateStore.js"
import * as FakeIdp from "./fake/FakeIdp.js"
import * as FakeTelegram from "./fake/FakeTelegram.js"
import * as LinkHarness from "./fake/LinkHarness.js"
import { message, post, SECRET, sentTexts, signInButtonUrl, updateId, webhookChannel } from "./fake/TelegramHarness.js"

const group = (chatId: number, fromId: number, text: string) =>
  message(fromId, text, { chat: { id: chatId, type: "group", title: "team" } }, updateId())

describe("Telegram account linking", () => {
  it.scoped("/link sends a sign-in button; after signing in the agent answers; /whoami and /unlink", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const fake = yield* FakeTelegram.make()
      const h = yield* LinkHarness.start({
        idp,
        channels: [webhookChannel(fake)],
        authorization: { requireLink: true },
        store: StateStoreModule.layerMemory,
        port: yield* LinkHarness.freePort
      })
      const webhook = `${h.host.url}/telegram/webhook`
      const commands = fake.callsOf("setMyCommands")[0]!.params.commands as Array<{ command: string }>
      assert.includeMembers(commands.map((c) => c.command), ["link", "unlink", "whoami"])

      // require_link: the first message gets the challenge, not the agent.
      yield* post(webhook, message(42, "hi", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => signInButtonUrl(fake, 42) !== undefined)
      assert.strictEqual(h.turns.length, 0)

      yield* post(webhook, message(42, "/link", {}, updateId()), SECRET)
      yield* fake.waitFor("sendMessage", 2)
      const url = signInButtonUrl(fake, 42)!
      // The link opens a page naming who is being linked; its button goes on to the provider.
      const confirmation = yield* Effect.promise(() => fetch(url).then((r) => r.text()))
      assert.include(confirmation, "Link telegram user @ada (42) to your account?")
      const done = yield* FakeIdp.signIn(url)
      assert.strictEqual(done.status, 200, done.body)

      yield* post(webhook, message(42, "hello again", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, 42).includes("echo: hello again"))
      assert.strictEqual(h.turns.length, 1)
      assert.deepStrictEqual(h.turns[0]!.context.verified?.claims.groups, ["agents-users"])

      yield* post(webhook, message(42, "/whoami", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, 42).some((t) => t.startsWith("You are linked as ada@example.com")))
      yield* post(webhook, message(42, "/unlink", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, 42).includes("Your account is unlinked."))
      assert.isTrue(Option.isNone(yield* h.store.getLink("telegram", "42")))
    }))

  it.scoped("in a group the challenge goes to the sender by private message, never into the group", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const fake = yield* FakeTelegram.make()
      const h = yield* LinkHarness.start({
        idp,
        channels: [webhookChannel(fake)],
        authorization: { requireLink: true },
        store: StateStoreModule.layerMemory,
        port: yield* LinkHarness.freePort
      })
      const webhook = `${h.host.url}/telegram/webhook`
      yield* post(webhook, group(-100, 43, `@${fake.username} hi team`), SECRET)
      yield* fake.waitUntil(() => signInButtonUrl(fake, 43) !== undefined && sentTexts(fake, -100).length > 0)
      assert.deepStrictEqual(sentTexts(fake, -100), [
        "Please sign in first: I sent you a private message with the link."
      ])
      yield* post(webhook, group(-100, 43, `/link@${fake.username}`), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, -100).length === 2)
      assert.strictEqual(sentTexts(fake, -100)[1], "I sent you a private message with the sign-in link.")
      // Nothing posted in the group carries a link or a button.
      for (const call of fake.callsOf("sendMessage").filter((c) => Number(c.params.chat_id) === -100)) {
        assert.notInclude(String(call.params.text), "http")
        assert.isUndefined(call.params.reply_markup)
      }
      // The page names the person (the sender), not the group.
      const confirmation = yield* Effect.promise(() => fetch(signInButtonUrl(fake, 43)!).then((r) => r.text()))
      assert.include(confirmation, "Link telegram user @ada (43) to your account?")
      const done = yield* FakeIdp.signIn(signInButtonUrl(fake, 43)!)
      assert.strictEqual(done.status, 200, done.body)
      // The person is linked, not the group; the group keeps its own conversation.
      assert.isTrue(Option.isSome(yield* h.store.getLink("telegram", "43")))
      assert.isTrue(Option.isNone(yield* h.store.getLink("telegram", "-100")))
      yield* post(webhook, group(-100, 43, `@${fake.username} now?`), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, -100).includes("echo: now?"))
      assert.strictEqual(h.turns[0]!.context.sessionKey, "telegram:-100")

      // Someone who never opened a private chat with the bot is told so in the group, without the link.
      fake.fail("sendMessage", {
        error_code: 403,
        description: "Forbidden: bot can't initiate conversation with a user",
        when: (params) => Number(params.chat_id) === 44,
        times: 5
      })
      yield* post(webhook, group(-100, 44, `/link@${fake.username}`), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, -100).some((t) => t.startsWith("I can't send you a private message")))
    }))

  it.scoped("link_sessions: linked identities share one key; all_linked from Telegram reaches the web chat too", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const fake = yield* FakeTelegram.make()
      const h = yield* LinkHarness.start({
        idp,
        channels: [
          webhookChannel(fake, {
            hooks: LinkHarness.allLinked
          }),
          WebChat.make()
        ],
        authorization: { requireLink: true },
        store: StateStoreModule.layerMemory,
        port: yield* LinkHarness.freePort,
        oidc: { linkSessions: true }
      })
      const webhook = `${h.host.url}/telegram/webhook`
      const linking = h.linker.linking!
      const tg = { channel: "telegram", nativeId: "42" } as never
      const web = { channel: "webchat", nativeId: "browser-0001" } as never
      assert.strictEqual((yield* FakeIdp.signIn((yield* linking.offer(tg)).url)).status, 200)
      assert.strictEqual((yield* FakeIdp.signIn((yield* linking.offer(web)).url)).status, 200)
      const view = Option.getOrThrow(yield* linking.linkOf(web))
      assert.sameMembers(view.linkedIdentities.map((i) => `${i.channel}:${i.nativeId}`), [
        "telegram:42",
        "webchat:browser-0001"
      ])

      // The web chat's pushes for this browser, and a Telegram message answered to all linked identities.
      const events = yield* Effect.promise(() => fetch(`${h.host.url}/webchat/events?user=browser-0001`))
      const reader = events.body!.getReader()
      yield* post(webhook, message(42, "from telegram", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, 42).includes("echo: from telegram"))
      let seen = ""
      while (!seen.includes("echo: from telegram")) {
        const chunk = yield* Effect.promise(() => reader.read())
        if (chunk.done) break
        seen += new TextDecoder().decode(chunk.value)
      }
      yield* Effect.promise(() => reader.cancel())
      assert.include(seen, "echo: from telegram")
      // The turn ran in the person's shared key.
      assert.strictEqual(h.turns[0]!.context.sessionKey, view.isolationKey)
      assert.match(view.isolationKey, /^oidc:/)
    }))
})
