/**
 * The embedded default agent: offline, deterministic, no API key. It echoes what it received, says what it
 * knows about the turn, remembers the conversation, and demonstrates tool calls:
 * - "roll a die" runs its own `roll_die` tool (server-side) and reports the result;
 * - "call <tool>" (or "use <tool>") asks the caller to run one of the function tools it offered (client-side),
 *   and the next turn's function result is answered.
 */
import type { Layer } from "effect"
import { Effect, Stream } from "effect"
import type { Content } from "../domain/Content.js"
import type { AgentResponse, AgentResponseUpdate, Message } from "../domain/Message.js"
import { lastUserText } from "../domain/Message.js"
import * as Agent from "./Agent.js"
import type { Target } from "./Target.js"
import type { Turn } from "./Target.js"

const name = "default-agent"

const hash = (s: string): number => {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 16777619)
  }
  return h >>> 0
}

const functionResults = (input: ReadonlyArray<Message>) =>
  input.flatMap((m) =>
    m.contents.filter((c): c is Extract<Content, { _tag: "function_result" }> => c._tag === "function_result")
  )

const countTokens = (s: string) => (s.length === 0 ? 0 : s.trim().split(/\s+/).length)

interface Plan {
  readonly contents: ReadonlyArray<Content>
  readonly text: string
  readonly finishReason: "stop" | "tool_calls"
}

const plan = (turn: Turn): Plan => {
  const results = functionResults(turn.input)
  if (results.length > 0) {
    const text = results.map((r) => `The tool call ${r.callId} returned: ${r.result}`).join("\n")
    return { contents: [], text, finishReason: "stop" }
  }
  const said = lastUserText(turn.input, { attachments: true })
  const lower = said.toLowerCase()
  const offered = turn.options.tools ?? []
  const wanted = offered.find((tool) =>
    lower.includes(`call ${tool.name.toLowerCase()}`) || lower.includes(`use ${tool.name.toLowerCase()}`)
  )
  if (wanted !== undefined) {
    const callId = `call_${hash(`${turn.sessionId ?? ""}:${said}`).toString(16)}`
    return {
      contents: [{ _tag: "function_call", callId, name: wanted.name, arguments: JSON.stringify({ request: said }) }],
      text: "",
      finishReason: "tool_calls"
    }
  }
  if (/\broll\b.*\b(die|dice)\b/.test(lower)) {
    const callId = `call_${hash(`roll:${said}`).toString(16)}`
    const value = (hash(said) % 6) + 1
    return {
      contents: [
        { _tag: "function_call", callId, name: "roll_die", arguments: "{\"sides\":6}" },
        { _tag: "function_result", callId, result: String(value) }
      ],
      text: `I rolled a six-sided die: it shows ${value}.`,
      finishReason: "stop"
    }
  }
  const turns = turn.history.filter((m) => m.role === "user").length + 1
  const where = turn.context.channel
  const text = said.length === 0 ?
    `I received a message with no text (turn ${turns} on ${where}).` :
    `You said: "${said}". This is turn ${turns} of this conversation, over the ${where} channel.`
  return { contents: [], text, finishReason: "stop" }
}

const usageOf = (turn: Turn, output: string) => {
  const inputTokens = turn.input.reduce(
    (n, m) => n + m.contents.reduce((k, c) => k + (c._tag === "text" ? countTokens(c.text) : 1), 0),
    0
  )
  const outputTokens = countTokens(output)
  return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens }
}

const run = (turn: Turn): AgentResponse => {
  const p = plan(turn)
  const contents: Array<Content> = [...p.contents]
  if (p.text.length > 0) contents.push({ _tag: "text", text: p.text })
  return {
    messages: [{ id: "msg_default_0", role: "assistant", contents, authorName: name }],
    usage: usageOf(turn, p.text),
    finishReason: p.finishReason
  }
}

/** Streams the reply word by word (each word with its leading space), like a model would. */
const stream = (turn: Turn): ReadonlyArray<AgentResponseUpdate> => {
  const p = plan(turn)
  const messageId = "msg_default_0"
  const updates: Array<AgentResponseUpdate> = []
  if (p.contents.length > 0) updates.push({ messageId, role: "assistant", contents: p.contents, authorName: name })
  const words = p.text.match(/\s*\S+/g) ?? []
  for (const word of words) {
    updates.push({ messageId, role: "assistant", contents: [{ _tag: "text", text: word }], authorName: name })
  }
  updates.push({
    contents: [{ _tag: "usage", usage: usageOf(turn, p.text) }],
    finishReason: p.finishReason
  })
  return updates
}

export const agent: Agent.Agent = Agent.make({
  name,
  run: (turn) => Effect.sync(() => run(turn)),
  stream: (turn) => Stream.suspend(() => Stream.fromIterable(stream(turn)))
})

export const layer: Layer.Layer<Target> = Agent.layer(agent)
