import { assert, describe, it } from "@effect/vitest"
import type { AgentResponseUpdate } from "../src/domain/Message.js"
import { ResponseAccumulator } from "../src/domain/Message.js"

const delta = (text: string, messageId = "m1"): AgentResponseUpdate => ({
  messageId,
  role: "assistant",
  contents: [{ _tag: "text", text }]
})

describe("ResponseAccumulator", () => {
  it("merges text deltas into one part without changing the updates it was given", () => {
    const updates = [delta("Hello"), delta(", "), delta("world"), delta("!")]
    const acc = new ResponseAccumulator()
    for (const update of updates) acc.add(update)
    const response = acc.done()
    assert.deepStrictEqual(response.messages, [
      { id: "m1", role: "assistant", contents: [{ _tag: "text", text: "Hello, world!" }] }
    ])
    assert.deepStrictEqual(updates.map((u) => u.contents[0]), [
      { _tag: "text", text: "Hello" },
      { _tag: "text", text: ", " },
      { _tag: "text", text: "world" },
      { _tag: "text", text: "!" }
    ])
  })

  it("a text after another part starts a new part", () => {
    const acc = new ResponseAccumulator()
    acc.add(delta("a"))
    acc.add(delta("b"))
    acc.add({ messageId: "m1", role: "assistant", contents: [{ _tag: "reasoning", text: "r" }] })
    acc.add(delta("c"))
    acc.add(delta("d"))
    assert.deepStrictEqual(acc.done().messages[0]!.contents, [
      { _tag: "text", text: "ab" },
      { _tag: "reasoning", text: "r" },
      { _tag: "text", text: "cd" }
    ])
  })
})
