/**
 * The web chat page in headless Chromium against the real host: streaming, working state, history across
 * reloads, new conversation, keyboard, errors, safe Markdown, live pushes from another channel, phone width.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, Stream } from "effect"
import { mkdir, mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { BrowserContext, Page } from "playwright-core"
import { chromium } from "playwright-core"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import type { Turn } from "../src/core/Target.js"
import type { AgentResponseUpdate } from "../src/domain/Message.js"
import * as TestHost from "./utils/TestHost.js"
import { relay, request } from "./utils/WebChatTest.js"

class Gate extends Context.Tag("test/WebChatBrowser/Gate")<Gate, Deferred.Deferred<void>>() {}
class Browser extends Context.Tag("test/WebChatBrowser/Browser")<Browser, BrowserContext>() {}

const xssReply = "Look: <img src=x onerror=\"window.__xss=1\"> and <script>window.__xss=2</script> " +
  "[click](javascript:window.__xss=3) end of test"

// A URL followed by a quote, a URL inside quotes with a query string, and HTML / javascript: links to neutralise.
const quoteReply = "See https://example.com/docs\" and \"https://example.com/a?b=1&c=2\" " +
  "<script>window.__xss=4</script> [bad](javascript:window.__xss=5) end of quote test"

const markdownReply = [
  "Here is **bold**, *italic* and `inline code`.",
  "",
  "```ts",
  "const x = 1",
  "```",
  "",
  "- one",
  "- two",
  "",
  "See [the docs](https://example.com/docs). That's all."
].join("\n")

const lastUserText = (turn: Turn) => {
  const last = turn.input.filter((m) => m.role === "user").pop()
  return last?.contents.map((c) => (c._tag === "text" ? c.text : "")).join("") ?? ""
}

const delta = (text: string): AgentResponseUpdate => ({
  messageId: "msg_test",
  role: "assistant",
  contents: [{ _tag: "text", text }]
})

// Small pieces, like tokens: the page renders Markdown that is cut anywhere.
const tokens = (text: string) => Stream.fromIterable((text.match(/[\s\S]{1,6}/g) ?? []).map(delta))

const testAgent = (gate: Deferred.Deferred<void>) =>
  Agent.make({
    name: "browser-test-agent",
    stream: (turn) => {
      const said = lastUserText(turn)
      if (said.includes("xss")) return tokens(xssReply)
      if (said.includes("quote")) return tokens(quoteReply)
      if (said.includes("markdown")) return tokens(markdownReply)
      if (said.includes("gate")) {
        return Stream.concat(
          Stream.make(delta("alpha ")),
          Stream.fromEffect(Effect.as(Deferred.await(gate), delta("omega")))
        )
      }
      return DefaultAgent.agent.stream(turn)
    }
  })

const hostLayer = Layer.unwrapEffect(Effect.map(Deferred.make<void>(), (gate) =>
  Layer.merge(
    TestHost.layer({ channels: [WebChat.make(), relay], target: Agent.layer(testAgent(gate)) }),
    Layer.succeed(Gate, gate)
  )))

const browserLayer = Layer.scoped(
  Browser,
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(async () => {
        const dir = await mkdtemp(join(tmpdir(), "webchat-chromium-"))
        const context = await chromium.launchPersistentContext(dir, {
          executablePath: "/usr/bin/chromium",
          headless: true,
          args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run"
          ],
          viewport: { width: 960, height: 720 }
        })
        return { context, dir }
      }),
      ({ context, dir }) =>
        Effect.promise(async () => {
          await context.close()
          await rm(dir, { recursive: true, force: true })
        })
    ),
    ({ context }) => context
  )
)

const artifacts = join(import.meta.dirname, "..", "test-artifacts")

/** A fresh page (empty localStorage: a new browser identity), ready once its push subscription is open. */
const openPage = (viewport?: { readonly width: number; readonly height: number }) =>
  Effect.gen(function*() {
    const context = yield* Browser
    const host = yield* AgentHost
    const errors: Array<string> = []
    const page = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const page = await context.newPage()
        page.setDefaultTimeout(15_000)
        if (viewport !== undefined) await page.setViewportSize(viewport)
        page.on("pageerror", (error) => errors.push(error.message))
        page.on("console", (message) => {
          if (message.type() === "error") errors.push(message.text())
        })
        await page.goto(`${host.url}/`)
        await page.evaluate(() => localStorage.clear())
        await page.reload()
        await page.waitForSelector("body[data-events=open]")
        return page
      }),
      (page) => Effect.promise(() => page.close())
    )
    return { page, errors, url: host.url }
  })

const p = <A>(f: () => Promise<A>) => Effect.promise(f)

const send = (page: Page, text: string) =>
  p(async () => {
    const input = page.getByLabel("Message")
    await input.fill(text)
    await input.press("Enter")
  })

/** Waits for a finished (no longer streaming) reply containing `text`; returns its text. */
const reply = (page: Page, text: string) =>
  p(async () => {
    const item = page.locator(".message.assistant:not(.streaming)", { hasText: text }).last()
    await item.waitFor()
    return (await item.locator(".body").textContent()) ?? ""
  })

const messageTexts = (page: Page) =>
  p(() => page.locator("#log > li .body").evaluateAll((nodes) => nodes.map((n) => n.textContent ?? "")))

describe("WebChat in a browser", () => {
  layer(Layer.merge(hostLayer, browserLayer), { excludeTestServices: true })((it) => {
    it.scoped("streams a reply with a working state, keeps history across reloads, and starts over", () =>
      Effect.gen(function*() {
        const { errors, page } = yield* openPage()
        const gate = yield* Gate
        yield* send(page, "gate please")
        yield* p(() => page.locator(".message.user", { hasText: "gate please" }).waitFor())
        yield* p(() => page.locator(".message.assistant.streaming", { hasText: "alpha" }).waitFor())
        assert.include(yield* p(() => page.locator("#status").innerText()), "Agent is replying")
        assert.isTrue(yield* p(() => page.locator("#send").isDisabled()))
        assert.strictEqual(yield* p(() => page.locator("#log").getAttribute("aria-busy")), "true")
        assert.notInclude(yield* p(() => page.locator("#log").innerText()), "omega")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual((yield* reply(page, "omega")).trim(), "alpha omega")
        yield* p(() => page.waitForFunction(() => document.getElementById("status")!.textContent === ""))
        assert.isFalse(yield* p(() => page.locator("#send").isDisabled()))

        yield* p(async () => {
          await page.getByLabel("Message").fill("hello there")
          await page.getByRole("button", { name: "Send" }).click()
        })
        assert.include(yield* reply(page, "hello there"), "This is turn 2 of this conversation")
        assert.strictEqual(yield* p(() => page.evaluate(() => document.activeElement?.id)), "input")

        yield* p(() => page.reload())
        yield* p(() => page.waitForSelector("body[data-events=open]"))
        const restored = yield* messageTexts(page)
        assert.strictEqual(restored.length, 4)
        assert.strictEqual(restored[0], "gate please")
        assert.strictEqual(restored[1]!.trim(), "alpha omega")
        assert.include(restored[3], "turn 2")

        yield* p(() => page.getByRole("button", { name: "New conversation" }).click())
        yield* p(() => page.waitForFunction(() => document.querySelectorAll("#log > li").length === 0))
        assert.strictEqual(yield* p(() => page.evaluate(() => document.activeElement?.id)), "input")
        yield* send(page, "fresh start")
        assert.include(yield* reply(page, "fresh start"), "This is turn 1 of this conversation")
        yield* p(() => page.reload())
        yield* p(() => page.waitForSelector("body[data-events=open]"))
        assert.strictEqual((yield* messageTexts(page)).length, 2)
        assert.deepStrictEqual(errors, [])
      }))

    it.scoped("sends on Enter, adds a line on Shift+Enter, and shows oversize errors without losing the draft", () =>
      Effect.gen(function*() {
        const { errors, page } = yield* openPage()
        yield* p(async () => {
          await page.getByLabel("Message").click()
          await page.keyboard.type("line one")
          await page.keyboard.press("Shift+Enter")
          await page.keyboard.type("line two")
        })
        assert.strictEqual(yield* p(() => page.getByLabel("Message").inputValue()), "line one\nline two")
        yield* p(() => page.keyboard.press("Enter"))
        yield* reply(page, "line two")
        assert.strictEqual(
          yield* p(() => page.locator(".message.user .body").first().textContent()),
          "line one\nline two"
        )
        assert.strictEqual(yield* p(() => page.getByLabel("Message").inputValue()), "")

        const long = "y".repeat(WebChat.defaultMaxMessageChars + 1)
        yield* send(page, long)
        yield* p(() => page.locator("#error").waitFor({ state: "visible" }))
        const shown = yield* p(() => page.locator("#error-text").innerText())
        assert.include(shown, `the limit is ${WebChat.defaultMaxMessageChars}`)
        assert.strictEqual(yield* p(() => page.getByLabel("Message").inputValue()), long, "the draft is kept")
        assert.strictEqual(
          yield* p(() => page.locator(".message.user").count()),
          1,
          "the rejected message is not shown"
        )
        yield* p(() => page.getByRole("button", { name: "Dismiss error" }).click())
        assert.isTrue(yield* p(() => page.locator("#error").isHidden()))
        assert.deepStrictEqual(errors.filter((e) => !e.includes("413")), [])
      }))

    it.scoped("renders agent HTML as text and only a safe Markdown subset", () =>
      Effect.gen(function*() {
        const { errors, page } = yield* openPage()
        yield* send(page, "show me xss")
        const text = yield* reply(page, "end of test")
        assert.include(text, "<img src=x onerror=\"window.__xss=1\">")
        assert.include(text, "<script>window.__xss=2</script>")
        assert.strictEqual(yield* p(() => page.locator("#log img, #log script, #log iframe").count()), 0)
        assert.strictEqual(yield* p(() => page.locator("#log a").count()), 0, "javascript: links stay text")
        assert.isUndefined(yield* p(() => page.evaluate(() => (window as unknown as { __xss?: number }).__xss)))

        yield* send(page, "<b>user html</b> and markdown please")
        yield* p(() => page.locator(".message.user", { hasText: "<b>user html</b>" }).waitFor())
        assert.strictEqual(yield* p(() => page.locator("#log .message.user b").count()), 0)
        yield* reply(page, "That's all")
        const last = page.locator(".message.assistant").last()
        assert.strictEqual(yield* p(() => last.locator("strong").innerText()), "bold")
        assert.strictEqual(yield* p(() => last.locator("em").innerText()), "italic")
        assert.strictEqual(yield* p(() => last.locator("p code").innerText()), "inline code")
        // CommonMark keeps the fence's last line break inside the code element.
        assert.strictEqual(yield* p(() => last.locator("pre code").innerText()), "const x = 1\n")
        assert.strictEqual(yield* p(() => last.locator("li").count()), 2)
        const link = last.locator("a")
        assert.strictEqual(yield* p(() => link.getAttribute("href")), "https://example.com/docs")
        assert.include(yield* p(() => link.getAttribute("rel")), "noopener")
        assert.strictEqual(yield* p(() => link.innerText()), "the docs")

        // The renderer on its own: whatever goes in, only allowed elements and attributes come out.
        const violations = yield* p(() =>
          page.evaluate(() => {
            const render = (window as unknown as { WebChatMarkdown: { render: (s: string) => string } })
              .WebChatMarkdown.render
            const inputs = [
              "[x](https://a.example/\"onmouseover=\"alert(1))",
              "<b onclick=alert(1)>hi</b>",
              "[x](javascript:alert(1)) [y](data:text/html,hi) [z]( https://ok.example)",
              "`<img src=x onerror=alert(1)>`",
              "```\n<script>alert(1)</script>\n```",
              "**<i>a</i>** _<u>b</u>_ https://example.com/a_b_c?x=1&y=\"2\"",
              "[**`x`**](https://example.com/\"><svg onload=alert(1)>)",
              "\u0000 1\u0000 <style>*{}</style>",
              "see https://example.com/x\" onmouseover=\"alert(1) and <https://example.com/y\">",
              "# h\n\n> quote\n\n---\n\n| a | b |\n|---|---|\n| <i>1</i> | [j](javascript:1) |",
              "![img](https://example.com/i.png) <a href=\"javascript:alert(1)\">x</a> mailto:a@b.example"
            ]
            const allowed = new Set([
              "P",
              "BR",
              "STRONG",
              "EM",
              "CODE",
              "PRE",
              "A",
              "UL",
              "OL",
              "LI",
              // Block elements of CommonMark / GFM tables, rendered by markdown-it.
              "H1",
              "H2",
              "H3",
              "H4",
              "H5",
              "H6",
              "BLOCKQUOTE",
              "HR",
              "TABLE",
              "THEAD",
              "TBODY",
              "TR",
              "TH",
              "TD"
            ])
            const found: Array<string> = []
            for (const input of inputs) {
              const template = document.createElement("template")
              template.innerHTML = render(input)
              for (const element of Array.from(template.content.querySelectorAll("*"))) {
                if (!allowed.has(element.tagName)) found.push(`${input} -> <${element.tagName}>`)
                for (const attribute of Array.from(element.attributes)) {
                  const ok = ["href", "rel", "target", "class", "data-lang"].includes(attribute.name)
                  if (!ok) found.push(`${input} -> ${attribute.name}=`)
                  if (attribute.name === "href" && !/^https?:\/\//.test(attribute.value)) {
                    found.push(`${input} -> href=${attribute.value}`)
                  }
                }
              }
            }
            return found
          })
        )
        assert.deepStrictEqual(violations, [])
        assert.deepStrictEqual(errors, [])
      }))

    it.scoped("links a URL followed by a quote correctly; <script> and javascript: links stay text", () =>
      Effect.gen(function*() {
        const { errors, page } = yield* openPage()
        yield* send(page, "a quote please")
        const text = yield* reply(page, "end of quote test")
        const last = page.locator(".message.assistant").last()
        const links = yield* p(() =>
          last.locator("a").evaluateAll((as) => as.map((a) => [a.getAttribute("href"), a.textContent]))
        )
        assert.deepStrictEqual(links, [
          ["https://example.com/docs", "https://example.com/docs"],
          ["https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2"]
        ])
        assert.include(text, "https://example.com/docs\" and \"https://example.com/a?b=1&c=2\"")
        assert.include(text, "<script>window.__xss=4</script>")
        assert.include(text, "[bad](javascript:window.__xss=5)")
        assert.strictEqual(yield* p(() => last.locator("script").count()), 0)
        assert.isUndefined(yield* p(() => page.evaluate(() => (window as unknown as { __xss?: number }).__xss)))
        assert.deepStrictEqual(errors, [])
      }))

    it.scoped("shows pushes from another channel live while the page is open", () =>
      Effect.gen(function*() {
        const { errors, page, url } = yield* openPage()
        yield* send(page, "hello")
        yield* reply(page, "You said: \"hello\"")
        yield* send(page, "some markdown please")
        yield* reply(page, "That's all")
        const user = yield* p(() => page.evaluate(() => localStorage.getItem("webchat.user")))
        assert.match(user!, WebChat.idPattern)
        const sent = yield* request(`${url}/relay`, {
          body: JSON.stringify({ to: user, message: "a note from another channel", echo: true })
        })
        assert.strictEqual(sent.status, 200)
        yield* p(() => page.locator(".message.user.pushed", { hasText: "a note from another channel" }).waitFor())
        yield* p(() =>
          page.locator(".message.assistant.pushed", { hasText: "You said: \"a note from another channel\"" }).waitFor()
        )
        yield* p(async () => {
          await mkdir(artifacts, { recursive: true })
          await page.screenshot({ path: join(artifacts, "webchat.png") })
        })

        // Reloading resumes after the last event seen: no duplicate pushes.
        yield* p(() => page.reload())
        yield* p(() => page.waitForSelector("body[data-events=open]"))
        yield* send(page, "after reload")
        yield* reply(page, "after reload")
        assert.strictEqual(yield* p(() => page.locator(".message.pushed").count()), 0)
        assert.deepStrictEqual(errors, [])
      }))

    it.scoped("fits a phone screen", () =>
      Effect.gen(function*() {
        const { errors, page } = yield* openPage({ width: 375, height: 667 })
        yield* send(page, "hello from a phone with a rather long message that has to wrap inside its bubble")
        yield* reply(page, "hello from a phone")
        const layout = yield* p(() =>
          page.evaluate(() => {
            const box = (id: string) => document.getElementById(id)!.getBoundingClientRect()
            return {
              overflow: document.documentElement.scrollWidth - window.innerWidth,
              send: box("send"),
              input: box("input"),
              reset: box("new-conversation")
            }
          })
        )
        assert.isAtMost(layout.overflow, 0, "no horizontal scrolling")
        for (const b of [layout.send, layout.input, layout.reset]) {
          assert.isAtLeast(b.left, 0)
          assert.isAtMost(b.right, 375)
          assert.isAtMost(b.bottom, 667)
        }
        yield* p(() => page.screenshot({ path: join(artifacts, "webchat-phone.png") }))
        assert.deepStrictEqual(errors, [])
      }))
  })
})
