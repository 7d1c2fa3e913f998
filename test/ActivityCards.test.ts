/**
 * What replies look like on the wire: sources the agent's text cites become Teams citations (`[n]` markers, one
 * `Claim` per source in the message entity), a structured result becomes an Adaptive Card 1.5, a JSON answer is
 * shown as a card instead of JSON text, and the feedback card names the turn's response id.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as Cards from "../src/channels/Activity/Cards.js"
import * as Agent from "../src/core/Agent.js"
import type { AgentResponse } from "../src/domain/Message.js"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"

const atPlausibleTime = TestClock.setTime(1_780_000_000_000)

const cite = (url: string, title: string, start: number, end: number) => ({
  type: "url_citation",
  url,
  title,
  start_index: start,
  end_index: end
})

const text = "Effect is a TypeScript library. It has fibers."

const cited: AgentResponse = {
  messages: [{
    role: "assistant",
    contents: [{
      _tag: "text",
      text,
      annotations: [
        cite("https://effect.website/docs", "Effect docs", 0, 31),
        cite("https://effect.website/docs/fibers", "Fibers", 32, 46),
        // The same source again: the same number.
        cite("https://effect.website/docs", "Effect docs", 32, 46),
        // Not a URL citation: ignored.
        { type: "file_citation", file_id: "f1", index: 3 }
      ]
    }]
  }]
}

const messageEntity = (body: Record<string, unknown>) =>
  (body.entities as Array<Record<string, unknown>>).find((e) => e.type === "https://schema.org/Message")!

describe("Activity channel: citations and cards", () => {
  it("citations: markers after the cited spans, one Claim per source, on the last message", () => {
    const [message] = Cards.messages(cited, { teams: true, feedback: true })
    assert.strictEqual(message!.text, "Effect is a TypeScript library.[1] It has fibers.[2][1]")
    const entity = messageEntity(message!)
    assert.deepStrictEqual(entity.additionalType, ["AIGeneratedContent"])
    assert.deepStrictEqual(entity.citation, [
      {
        "@type": "Claim",
        position: 1,
        appearance: {
          "@type": "DigitalDocument",
          name: "Effect docs",
          url: "https://effect.website/docs",
          abstract: "Effect is a TypeScript library."
        }
      },
      {
        "@type": "Claim",
        position: 2,
        appearance: {
          "@type": "DigitalDocument",
          name: "Fibers",
          url: "https://effect.website/docs/fibers",
          abstract: "It has fibers."
        }
      }
    ])
    // Markers the model already wrote are not repeated.
    const written: AgentResponse = {
      messages: [{
        role: "assistant",
        contents: [{ _tag: "text", text: "Fibers[1] are light.", annotations: [cite("https://x.test/", "X", 0, 6)] }]
      }]
    }
    assert.strictEqual(Cards.messages(written, { teams: true, feedback: false })[0]!.text, "Fibers[1] are light.")
    // No annotations: the label alone.
    const plain = Cards.messages({ messages: [{ role: "assistant", contents: [{ _tag: "text", text: "hi" }] }] }, {
      teams: true,
      feedback: false
    })
    assert.isUndefined(messageEntity(plain[0]!).citation)
  })

  it("at most 20 sources; names and abstracts are cut to Teams' limits", () => {
    const long = "x".repeat(300)
    const annotations = Array.from({ length: 25 }, (_, i) => cite(`https://s${i}.test/`, long, 0, 300))
    const [message] = Cards.messages({
      messages: [{ role: "assistant", contents: [{ _tag: "text", text: long, annotations }] }]
    }, { teams: true, feedback: false })
    const citations = messageEntity(message!).citation as Array<{ appearance: { name: string; abstract: string } }>
    assert.strictEqual(citations.length, 20)
    assert.strictEqual(citations[0]!.appearance.name.length, 80)
    assert.strictEqual(citations[0]!.appearance.abstract.length, 160)
    assert.isTrue(String(message!.text).endsWith("[20]"))
    assert.notInclude(String(message!.text), "[21]")
  })

  it("a structured result is an Adaptive Card 1.5; a JSON answer is shown as the card alone", () => {
    const value = { city: "Oslo", temperature: 3, tags: ["cold", "dark"], wind: { speed: 5, unit: "m/s" } }
    const [withText] = Cards.messages({
      messages: [{ role: "assistant", contents: [{ _tag: "text", text: "Here is the weather." }] }],
      value
    }, { teams: true, feedback: false })
    assert.strictEqual(withText!.text, "Here is the weather.")
    const [card] = withText!.attachments as Array<{ contentType: string; content: Record<string, unknown> }>
    assert.strictEqual(card!.contentType, "application/vnd.microsoft.card.adaptive")
    assert.strictEqual(card!.content.version, "1.5")
    assert.deepStrictEqual(card!.content.body, [
      { type: "FactSet", facts: [{ title: "city", value: "Oslo" }, { title: "temperature", value: "3" }] },
      { type: "TextBlock", text: "tags", weight: "Bolder", wrap: true, spacing: "Medium" },
      { type: "Container", items: [{ type: "TextBlock", text: "- cold\n- dark", wrap: true }] },
      { type: "TextBlock", text: "wind", weight: "Bolder", wrap: true, spacing: "Medium" },
      {
        type: "Container",
        items: [{ type: "FactSet", facts: [{ title: "speed", value: "5" }, { title: "unit", value: "m/s" }] }]
      }
    ])

    const [json] = Cards.messages({
      messages: [{ role: "assistant", contents: [{ _tag: "text", text: " {\"answer\": 42} " }] }]
    }, { teams: false, feedback: true, responseId: "activity_r1" })
    assert.strictEqual(json!.text, "")
    const attachments = json!.attachments as Array<{ content: Record<string, unknown> }>
    assert.deepStrictEqual(attachments[0]!.content.body, [{
      type: "FactSet",
      facts: [{ title: "answer", value: "42" }]
    }])
    // The feedback card rides along and names the response.
    const actions = attachments[1]!.content.actions as Array<{ data: unknown }>
    assert.deepStrictEqual(actions[0]!.data, { action: "feedback", reaction: "like", responseId: "activity_r1" })

    // Text that only looks like JSON stays text; a class instance is not a result to show.
    const [notJson] = Cards.messages({
      messages: [{ role: "assistant", contents: [{ _tag: "text", text: "{not json}" }] }],
      value: new Date(0)
    }, { teams: true, feedback: false })
    assert.strictEqual(notJson!.text, "{not json}")
    assert.isUndefined(notJson!.attachments)
  })

  it("a result too large for a message is one JSON block", () => {
    const value = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`field${i}`, "y".repeat(60)]))
    const [message] = Cards.messages({ messages: [], value }, { teams: true, feedback: false })
    const [card] = message!.attachments as Array<{ content: { body: Array<Record<string, unknown>> } }>
    assert.strictEqual(card!.content.body.length, 1)
    assert.strictEqual(card!.content.body[0]!.fontType, "Monospace")
    assert.isAtMost(JSON.stringify(card).length, 28_000)
  })

  it.scoped("on the wire: a cited, structured answer in Web Chat, with the feedback card for its response", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const h = yield* Harness.start({
        agent: (turns) =>
          Agent.make({
            name: "cites",
            run: (turn) =>
              Effect.sync(() => {
                turns.push(turn)
                return { ...cited, value: { sources: 2 } }
              })
          })
      })
      yield* h.send(Fake.message(h.fake, "what is Effect?", { channelId: "webchat" }))
      const [reply] = yield* h.fake.waitForSent(1)
      const body = reply!.body
      assert.strictEqual(body.type, "message")
      assert.strictEqual(body.text, "Effect is a TypeScript library.[1] It has fibers.[2][1]")
      assert.lengthOf(messageEntity(body).citation as Array<unknown>, 2)
      const attachments = body.attachments as Array<{ content: Record<string, unknown> }>
      assert.deepStrictEqual(attachments[0]!.content.body, [{
        type: "FactSet",
        facts: [{ title: "sources", value: "2" }]
      }])
      const responseId = h.turns[0]!.context.responseId
      assert.match(responseId ?? "", /^activity_[0-9a-f]{32}$/)
      const feedback = attachments[1]!.content.actions as Array<{ data: Record<string, unknown> }>
      assert.strictEqual(feedback[1]!.data.responseId, responseId)
    }))
})
