/**
 * Account linking from the web chat page, in headless Chromium against a real host, the FakeIdp and the
 * Telegram fake: a conversation started in Telegram continues in the web chat once both are linked to the same
 * person (link_sessions), replies fan out to every linked identity, and unlinking gives the browser its own
 * conversation back. Plus the account endpoints' answers over plain HTTP.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Page } from "playwright-core"
import { chromium } from "playwright-core"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as StateStoreModule from "../src/state/StateStore.js"
import * as FakeIdp from "./fake/FakeIdp.js"
import * as FakeTelegram from "./fake/FakeTelegram.js"
import * as LinkHarness from "./fake/LinkHarness.js"
import { message, post, SECRET, sentTexts, signInButtonUrl, updateId } from "./fake/TelegramHarness.js"
import * as TestHost from "./utils/TestHost.js"
import * as WebChatTest from "./utils/WebChatTest.js"

const p = <A>(f: () => Promise<A>) => Effect.promise(f)

/** A Chromium for the test's scope. */
const browser = Effect.acquireRelease(
  p(async () => {
    const dir = await mkdtemp(join(tmpdir(), "webchat-link-chromium-"))
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
      viewport: { width: 960, height: 720 }
    })
    return { context, dir }
  }),
  ({ context, dir }) =>
    p(async () => {
      await context.close()
      await rm(dir, { recursive: true, force: true })
    })
).pipe(Effect.map(({ context }) => context))

const logTexts = (page: Page) =>
  p(() => page.locator("#log > li .body").evaluateAll((nodes) => nodes.map((n) => (n.textContent ?? "").trim())))

const send = (page: Page, text: string) =>
  p(async () => {
    await page.getByLabel("Message").fill(text)
    await page.getByLabel("Message").press("Enter")
    await page.locator(".message.assistant:not(.streaming)", { hasText: `echo: ${text}` }).last().waitFor()
  })

describe("WebChat account linking", () => {
  it.scopedLive("start in Telegram, link the web chat in the browser, continue there; replies fan out; unlink", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const fake = yield* FakeTelegram.make()
      // Sign-in is not required: a person links because they want one conversation everywhere.
      const h = yield* WebChatTest.startTelegramAndWebChat(idp, fake)
      const webhook = `${h.host.url}/telegram/webhook`

      // Telegram: link, then start the conversation.
      yield* post(webhook, message(42, "/link", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => signInButtonUrl(fake, 42) !== undefined)
      assert.strictEqual((yield* FakeIdp.signIn(signInButtonUrl(fake, 42)!)).status, 200)
      yield* post(webhook, message(42, "my colour is blue", {}, updateId()), SECRET)
      yield* fake.waitUntil(() => sentTexts(fake, 42).includes("echo: my colour is blue"))
      const shared = Option.getOrThrow(yield* h.store.getLink("telegram", "42")).isolationKey
      assert.match(shared, /^oidc:/)
      assert.strictEqual(h.turns[0]!.context.sessionKey, shared)

      // The web chat: a fresh browser, not linked, with its own empty conversation.
      const context = yield* browser
      const errors: Array<string> = []
      const page = yield* p(async () => {
        const page = await context.newPage()
        page.setDefaultTimeout(15_000)
        page.on("pageerror", (error) => errors.push(error.message))
        await page.goto(`${h.host.url}/`)
        await page.waitForSelector("body[data-account=unlinked]")
        await page.waitForSelector("body[data-events=open]")
        return page
      })
      assert.deepStrictEqual(yield* logTexts(page), [])
      assert.isTrue(yield* p(() => page.locator("#unlink-account").isHidden()))

      // "Link your account": the sign-in runs in a new tab (the host's /link/start page naming the browser by its
      // tag, its button, the provider, the callback).
      const signInTab = yield* p(async () => {
        const [tab] = await Promise.all([
          context.waitForEvent("page"),
          page.getByRole("button", { name: "Link your account" }).click()
        ])
        await tab.waitForSelector("body[data-status=confirm]")
        return tab
      })
      const question = yield* p(() => signInTab.locator("h1").innerText())
      assert.match(question, /^Link webchat user web chat browser [0-9a-f]{8} to your account\?$/)
      yield* p(async () => {
        await signInTab.getByRole("button", { name: "Continue to sign in" }).click()
        await signInTab.waitForSelector("body[data-status=linked]")
      })
      assert.strictEqual(yield* p(() => signInTab.locator("body").getAttribute("data-status")), "linked")
      assert.include(yield* p(() => signInTab.locator("h1").innerText()), "Account linked")
      yield* p(() => signInTab.close())

      // The page notices, shows who it is linked as, and now shows the person's conversation from Telegram.
      yield* p(() => page.waitForSelector("body[data-account=linked]"))
      assert.strictEqual(yield* p(() => page.locator("#account").innerText()), "Linked as ada@example.com")
      yield* p(() => page.locator(".message.assistant", { hasText: "echo: my colour is blue" }).waitFor())
      assert.deepStrictEqual(yield* logTexts(page), ["my colour is blue", "echo: my colour is blue"])
      const user = yield* p(() => page.evaluate(() => localStorage.getItem("webchat.user")!))
      const webLink = Option.getOrThrow(yield* h.store.getLink("webchat", user))
      assert.strictEqual(webLink.isolationKey, shared)

      // Continue in the web chat: the same conversation, and the reply also goes to Telegram.
      yield* send(page, "what is my colour?")
      const turn = h.turns[1]!
      assert.strictEqual(turn.text, "what is my colour?")
      assert.strictEqual(turn.context.sessionKey, shared)
      assert.strictEqual(turn.sessionId, h.turns[0]!.sessionId)
      yield* fake.waitUntil(() => sentTexts(fake, 42).some((t) => t.includes("echo: what is my colour?")))

      // Back in Telegram: the reply is pushed to the open page.
      yield* post(webhook, message(42, "back in telegram", {}, updateId()), SECRET)
      yield* p(() => page.locator(".message.pushed", { hasText: "echo: back in telegram" }).waitFor())
      assert.strictEqual(h.turns[2]!.sessionId, h.turns[0]!.sessionId)

      // A reload keeps the shared conversation.
      yield* p(async () => {
        await page.reload()
        await page.waitForSelector("body[data-account=linked]")
        await page.locator(".message", { hasText: "back in telegram" }).first().waitFor()
      })
      assert.strictEqual((yield* logTexts(page)).length, 6)

      // Unlink: the browser gets its own (empty) conversation back; Telegram keeps the person's.
      yield* p(async () => {
        await page.getByRole("button", { name: "Unlink" }).click()
        await page.waitForSelector("body[data-account=unlinked]")
        await page.waitForFunction(() => document.querySelectorAll("#log > li").length === 0)
      })
      assert.isTrue(Option.isNone(yield* h.store.getLink("webchat", user)))
      yield* send(page, "alone again")
      assert.notStrictEqual(h.turns[3]!.context.sessionKey, shared)
      assert.deepStrictEqual(errors, [])
    }))

  it.scoped("the account endpoints: state of the link, a sign-in URL, unlink; 404 without a linker, 400 for bad ids", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* LinkHarness.start({
        idp,
        channels: [WebChat.make()],
        authorization: {},
        store: StateStoreModule.layerMemory,
        port: yield* LinkHarness.freePort
      })
      const get = (path: string) =>
        p(() => fetch(`${h.host.url}${path}`).then(async (r) => ({ status: r.status, body: await r.json() })))
      assert.deepStrictEqual((yield* get("/webchat/account?user=browser-0001")).body, {
        linking: true,
        linked: false
      })
      assert.strictEqual((yield* get("/webchat/account?user=x")).status, 400)
      assert.strictEqual((yield* h.post("/webchat/link", { user: "no" })).status, 400)

      const offer = yield* h.post("/webchat/link", { user: "browser-0001" })
      assert.strictEqual(offer.status, 200)
      assert.match(offer.body.url, /\/link\/start\?state=v1\./)
      assert.strictEqual((yield* FakeIdp.signIn(offer.body.url)).status, 200)
      const linked = (yield* get("/webchat/account?user=browser-0001")).body
      assert.strictEqual(linked.linked, true)
      assert.strictEqual(linked.as, "ada@example.com")
      // Without link_sessions the browser keeps its own conversations.
      assert.strictEqual(linked.shared, false)
      assert.deepStrictEqual((yield* h.post("/webchat/unlink", { user: "browser-0001" })).body, { unlinked: true })
      assert.deepStrictEqual((yield* h.post("/webchat/unlink", { user: "browser-0001" })).body, { unlinked: false })
    }))

  it.scoped("without a linker the page offers no linking and the link endpoint says why", () =>
    Effect.gen(function*() {
      const host = Context.get(yield* Layer.build(TestHost.layer({ channels: [WebChat.make()] })), AgentHost)
      const account = yield* p(() => fetch(`${host.url}/webchat/account?user=browser-0001`).then((r) => r.json()))
      assert.deepStrictEqual(account, { linking: false, linked: false })
      const link = yield* p(() =>
        fetch(`${host.url}/webchat/link`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ user: "browser-0001" })
        }).then(async (r) => ({ status: r.status, body: await r.json() }))
      )
      assert.strictEqual(link.status, 404)
      assert.strictEqual(link.body.error.type, "linking_unavailable")
    }))
})
