/**
 * Account linking on the Activity channel (Teams) against the fake Bot Framework and the fake IdP: the sign-in
 * card a `require_link` turn gets instead of the agent, the link it starts completing end to end, `/whoami` and
 * `/unlink`, and a group's challenge going to the sender's 1:1 chat (created through the connector), never into
 * the group.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Option, TestClock } from "effect"
import type { AuthorizationConfig } from "../src/auth/Authorization.js"
import * as Authorization from "../src/auth/Authorization.js"
import * as Activity from "../src/channels/Activity/Activity.js"
import * as Linking from "../src/channels/Activity/Linking.js"
import * as StateStoreModule from "../src/state/StateStore.js"
import { channelOptions } from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"
import * as FakeIdp from "./fake/FakeIdp.js"
import * as LinkHarness from "./fake/LinkHarness.js"

const atPlausibleTime = TestClock.setTime(1_780_000_000_000)

const bot = { id: `28:${Fake.APP_ID}`, name: "Bot" }
const group = { id: "19:group@thread.v2", conversationType: "groupChat", isGroup: true, tenantId: Fake.TENANT_ID }
const mention = { type: "mention", text: "<at>Bot</at>", mentioned: bot }

/** Messages the bot sent to a conversation, in order. */
const messagesTo = (fake: Fake.FakeBotFramework, conversationId: string) =>
  fake.sent().filter((c) => c.conversationId === conversationId && c.body.type === "message").map((c) => c.body)

const textsTo = (fake: Fake.FakeBotFramework, conversationId: string) =>
  messagesTo(fake, conversationId).map((m) => String(m.text))

/** The sign-in card's URL in each message to a conversation that carries one. */
const cardUrls = (fake: Fake.FakeBotFramework, conversationId: string): Array<string> =>
  messagesTo(fake, conversationId).flatMap((m) => {
    const attachments = (m.attachments ?? []) as Array<{ contentType: string; content: any }>
    return attachments.filter((a) => a.contentType === Linking.SIGNIN_CARD).map((a) => {
      const button = a.content.buttons[0] as { type: string; value: string }
      assert.strictEqual(button.type, "openUrl")
      return button.value
    })
  })

const createCalls = (fake: Fake.FakeBotFramework) => fake.calls.filter((c) => c.path === "/v3/conversations")

const start = (
  authorization: AuthorizationConfig = { requireLink: true },
  options: Partial<Activity.Options> = {}
) =>
  Effect.gen(function*() {
    yield* atPlausibleTime
    const idp = yield* FakeIdp.make()
    const fake = yield* Fake.make()
    const h = yield* LinkHarness.start({
      idp,
      channels: [Activity.make(channelOptions(fake, options))],
      authorization,
      store: StateStoreModule.layerMemory,
      port: yield* LinkHarness.freePort
    })
    const send = (activity: Record<string, unknown>) =>
      Effect.gen(function*() {
        const answer = yield* Fake.post(h.host.url, activity, yield* fake.sign())
        assert.strictEqual(answer.status, 202, answer.body)
      })
    return { h, fake, send }
  })

describe("Activity channel: account linking", () => {
  it.scoped("1:1: a sign-in card instead of the agent; the link completes; /whoami; /unlink challenges again", () =>
    Effect.gen(function*() {
      const { fake, h, send } = yield* start()
      yield* send(Fake.message(fake, "hi"))
      yield* fake.waitUntil(() => cardUrls(fake, "a:conv-1").length === 1)
      assert.strictEqual(h.turns.length, 0)
      const url = cardUrls(fake, "a:conv-1")[0]!
      assert.isTrue(url.startsWith(`${h.host.url}/link/start?state=`), url)
      // The card is the only thing sent: no URL in the text.
      assert.notInclude(textsTo(fake, "a:conv-1")[0]!, "http")

      // The link opens a page naming who is being linked; its button goes on to the provider.
      const confirmation = yield* Effect.promise(() => fetch(url).then((r) => r.text()))
      assert.include(confirmation, "Link activity user Ada (Teams) to your account?")
      const done = yield* FakeIdp.signIn(url)
      assert.strictEqual(done.status, 200, done.body)
      assert.isTrue(Option.isSome(yield* h.store.getLink("activity", "aad-user-1")))

      yield* send(Fake.message(fake, "hello again"))
      yield* fake.waitUntil(() => textsTo(fake, "a:conv-1").includes("echo: hello again"))
      assert.strictEqual(h.turns.length, 1)
      assert.deepStrictEqual(h.turns[0]!.context.verified?.claims.groups, ["agents-users"])
      assert.strictEqual(h.turns[0]!.context.sessionKey, "activity:a:conv-1")

      yield* send(Fake.message(fake, "/whoami"))
      yield* fake.waitUntil(() => textsTo(fake, "a:conv-1").some((t) => t.startsWith("You are linked as")))
      const whoami = textsTo(fake, "a:conv-1").find((t) => t.startsWith("You are linked as"))!
      assert.include(whoami, "You are linked as ada@example.com (subject user-1).")
      assert.include(whoami, "groups: agents-users")
      assert.strictEqual(h.turns.length, 1, "a command is not a turn")

      yield* send(Fake.message(fake, "/unlink"))
      yield* fake.waitUntil(() => textsTo(fake, "a:conv-1").includes(Linking.texts.unlinked))
      assert.isTrue(Option.isNone(yield* h.store.getLink("activity", "aad-user-1")))
      yield* send(Fake.message(fake, "still there?"))
      yield* fake.waitUntil(() => cardUrls(fake, "a:conv-1").length === 2)
      assert.strictEqual(h.turns.length, 1)
      assert.notStrictEqual(cardUrls(fake, "a:conv-1")[1], url, "a fresh link")
    }))

  it.scoped("group: the challenge and /link go to the sender's 1:1 chat; the group gets a note, never the link", () =>
    Effect.gen(function*() {
      const { fake, h, send } = yield* start()
      const inGroup = (text: string, from?: Record<string, unknown>) =>
        Fake.message(fake, `<at>Bot</at> ${text}`, {
          conversation: group,
          entities: [mention],
          ...(from === undefined ? {} : { from })
        })

      yield* send(inGroup("hi team"))
      yield* fake.waitUntil(() => textsTo(fake, group.id).length === 1)
      // Addressed to the sender with a mention; no link.
      assert.deepStrictEqual(textsTo(fake, group.id), [`<at>Ada</at> ${Linking.texts.sentLink}`])
      assert.deepStrictEqual(messagesTo(fake, group.id)[0]!.entities, [{
        type: "mention",
        text: "<at>Ada</at>",
        mentioned: { id: "29:user-1", name: "Ada" }
      }])
      assert.strictEqual(h.turns.length, 0)
      // A 1:1 conversation with the sender, created through the connector in the sender's tenant.
      const created = createCalls(fake)
      assert.strictEqual(created.length, 1)
      assert.deepStrictEqual(created[0]!.body.members, [{ id: "29:user-1" }])
      assert.deepStrictEqual(created[0]!.body.bot, bot)
      assert.deepStrictEqual(created[0]!.body.channelData, { tenant: { id: Fake.TENANT_ID } })
      const dm = created[0]!.answer!.id!
      assert.strictEqual(cardUrls(fake, dm).length, 1)

      // `/link` after the mention: the same private chat (remembered), a fresh link, a note in the group.
      yield* send(inGroup("/link"))
      yield* fake.waitUntil(() => textsTo(fake, group.id).length === 2)
      assert.strictEqual(textsTo(fake, group.id)[1], `<at>Ada</at> ${Linking.texts.sentLink}`)
      assert.strictEqual(createCalls(fake).length, 1)
      assert.strictEqual(cardUrls(fake, dm).length, 2)

      const done = yield* FakeIdp.signIn(cardUrls(fake, dm)[1]!)
      assert.strictEqual(done.status, 200, done.body)
      // The person is linked, not the group; the group keeps its own conversation.
      assert.isTrue(Option.isSome(yield* h.store.getLink("activity", "aad-user-1")))
      yield* send(inGroup("now?"))
      yield* fake.waitUntil(() => textsTo(fake, group.id).includes("echo: now?"))
      assert.strictEqual(h.turns[0]!.context.sessionKey, `activity:${group.id}`)

      // `/whoami` in the group: the details go to the private chat.
      yield* send(inGroup("/whoami"))
      yield* fake.waitUntil(() => textsTo(fake, group.id).includes(`<at>Ada</at> ${Linking.texts.sentWhoami}`))
      assert.isTrue(textsTo(fake, dm).some((t) => t.startsWith("You are linked as ada@example.com")))

      // Someone the bot cannot open a private chat with is told so in the group, without the link.
      fake.fail({ status: 403, code: "Forbidden", when: (c) => c.path === "/v3/conversations", times: 1 })
      yield* send(inGroup("hello", { id: "29:user-2", name: "Bo", aadObjectId: "aad-user-2" }))
      yield* fake.waitUntil(() => textsTo(fake, group.id).includes(`<at>Bo</at> ${Linking.texts.noPrivateChat}`))
      assert.strictEqual(createCalls(fake).length, 2)
      assert.strictEqual(h.turns.length, 1)

      for (const message of messagesTo(fake, group.id)) {
        assert.notInclude(String(message.text), "http")
        assert.notInclude(JSON.stringify(message.attachments ?? []), "/link/start")
      }
    }))

  it.scoped("an allowlist that needs linked claims challenges too; Teams 1:1 streaming does not start before it", () =>
    Effect.gen(function*() {
      const allow = Either.getOrThrow(Authorization.parseAllow("claim:groups=agents-users"))
      const { fake, h, send } = yield* start(allow, { stream: true })
      yield* send(Fake.message(fake, "hi"))
      yield* fake.waitUntil(() => cardUrls(fake, "a:conv-1").length === 1)
      // The card only: no stream was opened for a turn that did not run.
      const streamed = fake.sent().filter((c) => JSON.stringify(c.body.entities ?? []).includes("streaminfo"))
      assert.strictEqual(streamed.length, 0)
      assert.strictEqual(h.turns.length, 0)
      const done = yield* FakeIdp.signIn(cardUrls(fake, "a:conv-1")[0]!)
      assert.strictEqual(done.status, 200, done.body)
      yield* send(Fake.message(fake, "hello"))
      yield* fake.waitUntil(() => textsTo(fake, "a:conv-1").includes("echo: hello"))
      assert.deepStrictEqual(h.turns[0]!.context.verified?.claims.groups, ["agents-users"])
    }))

  it("commands: only /link, /unlink, /whoami, alone; whoami text names the claims, not ids", () => {
    assert.strictEqual(Linking.parseCommand(" /LINK "), "link")
    assert.strictEqual(Linking.parseCommand("/whoami"), "whoami")
    assert.isUndefined(Linking.parseCommand("/link me"))
    assert.isUndefined(Linking.parseCommand("please /unlink"))
    const text = Linking.whoamiText({
      identity: { channel: "activity", nativeId: "aad-1" } as never,
      subject: "sub-1",
      isolationKey: "activity:aad-1",
      claims: { sub: "sub-1", iss: "https://idp", email: "a@b.c", groups: ["x", "y"] },
      linkedAt: 0 as never,
      linkedIdentities: [{ channel: "activity", nativeId: "aad-1" } as never, {
        channel: "telegram",
        nativeId: "42"
      }] as never
    }, { channel: "activity", nativeId: "aad-1" } as never)
    assert.strictEqual(
      text,
      "You are linked as a@b.c (subject sub-1).\nVerified claims: email: a@b.c; groups: x, y.\nAlso linked: telegram:42."
    )
  })
})
