import { assert, describe, it } from "@effect/vitest"
import { replyOf, splitText } from "../src/channels/shared/ReplyText.js"
import { parseCommand } from "../src/channels/Telegram/Telegram.js"
import { assistantMessage, userMessage } from "../src/domain/Message.js"

describe("Telegram rendering", () => {
  it("splits at paragraph, then line, then word boundaries, losing nothing", () => {
    const text = "a".repeat(3000) + "\n\n" + "b".repeat(3000) + "\n" + "c".repeat(3000)
    const chunks = splitText(text)
    assert.deepStrictEqual(chunks.map((c) => c.length), [3002, 3001, 3000])
    assert.strictEqual(chunks.join(""), text)
  })

  it("never cuts a surrogate pair or exceeds the limit", () => {
    const text = "😀".repeat(5000)
    const chunks = splitText(text)
    for (const chunk of chunks) {
      assert.isAtMost(chunk.length, 4096)
      assert.isFalse(/[\uD800-\uDBFF]$/.test(chunk))
    }
    assert.strictEqual(chunks.join(""), text)
    assert.deepStrictEqual(splitText(""), [])
  })

  it("renders assistant text, or the user's text for an echo", () => {
    assert.strictEqual(replyOf({ messages: [userMessage("q"), assistantMessage("a")] }).text, "a")
    assert.strictEqual(replyOf({ messages: [userMessage("echoed")] }).text, "echoed")
  })

  it("parses commands with bot suffixes and arguments", () => {
    assert.deepStrictEqual(parseCommand("/New@My_Bot  now please"), {
      name: "new",
      args: "now please",
      target: "my_bot"
    })
    assert.deepStrictEqual(parseCommand("/start"), { name: "start", args: "", target: undefined })
    assert.isUndefined(parseCommand("hello /start"))
    assert.isUndefined(parseCommand("/"))
  })
})
