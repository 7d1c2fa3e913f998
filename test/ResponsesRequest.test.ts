import { assert, describe, it } from "@effect/vitest"
import type { ParsedInput } from "../src/channels/Responses/Request.js"
import { identityOf, parseInput, parseResponseTarget, runOptions } from "../src/channels/Responses/Request.js"
import { CreateResponseBody, decodeCreateBody, decodeCreateBodyWithSchema } from "../src/channels/Responses/Wire.js"

const ids = (kind: string, n: number) => `${kind}_${n}`

const parsed = (input: Parameters<typeof parseInput>[0]): ParsedInput => {
  const out = parseInput(input, ids)
  if ("message" in out) throw new Error(out.message)
  return out
}

const body = (raw: unknown) => {
  const decoded = decodeCreateBody(raw)
  if (!("body" in decoded)) throw new Error(decoded.message)
  return decoded.body
}

describe("Responses request mapping", () => {
  it("a string input is one user message", () => {
    const out = parsed("hi")
    assert.deepStrictEqual(out.messages, [{ role: "user", contents: [{ _tag: "text", text: "hi" }] }])
    assert.strictEqual(out.items[0]!.id, "msg_0")
  })

  it("loose parts collect into one user message, flushed before the next item", () => {
    const out = parsed([
      { type: "input_text", text: "a" },
      { type: "input_image", image_url: "https://example.com/x.png" },
      { type: "input_file", file_data: "data:application/pdf;base64,JVBERi0=", filename: "x.pdf" },
      { type: "message", role: "system", content: "sys" }
    ])
    assert.strictEqual(out.messages.length, 2)
    assert.deepStrictEqual(out.messages[0]!.contents, [
      { _tag: "text", text: "a" },
      { _tag: "uri", uri: "https://example.com/x.png", mediaType: "image/*" },
      { _tag: "data", mediaType: "application/pdf", data: "JVBERi0=", name: "x.pdf" }
    ])
    assert.strictEqual(out.messages[1]!.role, "system")
  })

  it("data URL images become inline data; function items map to calls and results", () => {
    const out = parsed([
      { role: "user", content: [{ type: "input_image", image_url: "data:image/png;base64,AAAA" }] },
      { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
      { type: "function_call_output", call_id: "c1", output: [{ type: "input_text", text: "ok" }] }
    ])
    assert.deepStrictEqual(out.messages[0]!.contents, [{ _tag: "data", mediaType: "image/png", data: "AAAA" }])
    assert.deepStrictEqual(out.messages[1]!.contents, [{
      _tag: "function_call",
      callId: "c1",
      name: "f",
      arguments: "{}"
    }])
    assert.deepStrictEqual(out.messages[2], {
      role: "tool",
      contents: [{ _tag: "function_result", callId: "c1", result: "ok" }]
    })
    assert.deepStrictEqual(out.items.map((i) => i.type), ["message", "function_call", "function_call_output"])
  })

  it("problems name their parameter", () => {
    assert.deepInclude(parseInput([{ type: "input_file" }], ids), { param: "input[0]" })
    assert.deepInclude(parseInput([{ type: "item_reference", id: "x" }], ids), { param: "input[0]" })
    assert.deepInclude(parseInput([{ role: "user", content: 5 }], ids), { param: "input[0].content" })
  })

  it("response_target forms", () => {
    assert.isUndefined(parseResponseTarget(undefined))
    assert.deepStrictEqual(parseResponseTarget("active"), { kind: "active" })
    assert.deepStrictEqual(parseResponseTarget("none"), { kind: "none" })
    assert.deepStrictEqual(parseResponseTarget("telegram:42"), { kind: "channels", targets: ["telegram:42"] })
    assert.deepStrictEqual(parseResponseTarget(["telegram", "originating"]), {
      kind: "channels",
      targets: ["telegram", "originating"]
    })
    assert.deepStrictEqual(parseResponseTarget({ channels: ["teams"], echo_input: true }), {
      kind: "channels",
      targets: ["teams"],
      echoInput: true
    })
    assert.deepStrictEqual(parseResponseTarget({ kind: "all_linked" }), { kind: "all_linked" })
    assert.deepInclude(parseResponseTarget([]), { param: "response_target" })
    assert.deepInclude(parseResponseTarget({ kind: "bogus" }), { param: "response_target" })
  })

  it("options, identity", () => {
    const b = body({
      input: "x",
      model: "m",
      instructions: "be brief",
      temperature: 0.5,
      top_p: 0.9,
      max_output_tokens: 100,
      tool_choice: { type: "function", name: "f" },
      parallel_tool_calls: false,
      metadata: { k: "v" },
      text: { format: { type: "json_object" } },
      tools: [{ type: "function", name: "f", parameters: { type: "object" } }],
      user: "u1",
      safety_identifier: "s1",
      unknown_field: true
    })
    assert.deepStrictEqual(runOptions(b), {
      instructions: "be brief",
      model: "m",
      temperature: 0.5,
      topP: 0.9,
      maxOutputTokens: 100,
      toolChoice: { type: "function", name: "f" },
      parallelToolCalls: false,
      metadata: { k: "v" },
      textFormat: { type: "json_object" },
      tools: [{ name: "f", parameters: { type: "object" } }]
    })
    assert.deepStrictEqual(identityOf("responses", b), { channel: "responses", nativeId: "s1" } as never)
    assert.deepStrictEqual(identityOf("responses", body({ input: "x", user: "u1" })), {
      channel: "responses",
      nativeId: "u1"
    } as never)
    assert.isUndefined(identityOf("responses", body({ input: "x" })))
  })
})

describe("Responses body decoding", () => {
  // What the schema keeps of a body: its own fields (it ignores the rest).
  const known = (raw: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(raw).filter(([key]) => Object.hasOwn(CreateResponseBody.fields, key)))

  it("the hand-checked fast path accepts exactly what the schema accepts, and reports the schema's problem", () => {
    const bodies: ReadonlyArray<unknown> = [
      { model: "x", input: "hi" },
      { input: "hi", stream: true, store: false, background: null, extra: { anything: 1 } },
      { input: ["a"], temperature: 2, top_p: 0, presence_penalty: -2, frequency_penalty: 2, top_logprobs: 20 },
      { input: "x", max_output_tokens: 16, max_tool_calls: 1, truncation: "auto", service_tier: "flex" },
      { input: "x", user: "u", safety_identifier: "s".repeat(64), prompt_cache_key: "k", previous_response_id: "r" },
      { input: "x", conversation: "c", response_target: 5, on_disconnect: "later", instructions: null },
      { input: "x", conversation: { id: "c" }, metadata: { a: "b" }, tools: [], text: { format: { type: "text" } } },
      { input: 3 },
      { input: "x", model: 1 },
      { input: "x", temperature: 2.5 },
      { input: "x", temperature: "hot" },
      { input: "x", top_p: -0.1 },
      { input: "x", max_output_tokens: 15 },
      { input: "x", max_output_tokens: 16.5 },
      { input: "x", top_logprobs: 21 },
      { input: "x", stream: "yes" },
      { input: "x", previous_response_id: "" },
      { input: "x", conversation: "" },
      { input: "x", safety_identifier: "s".repeat(65) },
      { input: "x", truncation: "sometimes" },
      { input: "x", metadata: { a: 1 } },
      JSON.parse(`{"input":"x","__proto__":{"stream":"no"},"constructor":1,"toString":2}`),
      {}
    ]
    for (const raw of bodies) {
      const fast = decodeCreateBody(raw)
      const slow = decodeCreateBodyWithSchema(raw)
      if ("body" in slow) {
        assert.isTrue("body" in fast, JSON.stringify(raw))
        if ("body" in fast) assert.deepStrictEqual(known(fast.body as Record<string, unknown>), slow.body)
      } else {
        assert.deepStrictEqual(fast, slow, JSON.stringify(raw))
      }
    }
  })
})
