/**
 * The embedded default agent: offline, deterministic, no API key. It echoes what it received, says what it
 * knows about the turn, remembers the conversation, and plays the model for every client's test:
 * - "roll a die" runs its own `roll_die` tool (server-side) and reports the result;
 * - function tools the caller offers (client-side) are called per `tool_choice`: never with `none`; with `auto`
 *   (the default) when the prompt asks for one ("call <tool>", "use <tool>", a word of the tool's name or two of
 *   its description); always with `required` (the best match, else the first) or a named function. Arguments are
 *   generated from the tool's JSON schema (valid against it), filled from the prompt where a value obviously fits
 *   (a place, the question, its numbers). A turn whose new input carries function results answers with them;
 * - `text.format` / `response_format` `json_schema` gets JSON valid against the schema, `json_object` a JSON
 *   object.
 * Nothing of this runs (no schema is looked at) for a turn without tools or a format.
 */
import type { Layer } from "effect"
import { Effect, Stream } from "effect"
import type { ToolDefinition } from "../domain/ChannelRequest.js"
import type { Content } from "../domain/Content.js"
import { argumentsFor, valueFor, wordsOf } from "../domain/JsonSchemaValue.js"
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

type FunctionResult = Extract<Content, { _tag: "function_result" }>

/** Function results of the input's tail: what came after the last user message (all of it without one). */
const pendingResults = (input: ReadonlyArray<Message>): ReadonlyArray<FunctionResult> => {
  let out: Array<FunctionResult> | undefined
  for (let i = input.length - 1; i >= 0; i--) {
    const m = input[i]!
    if (m.role === "user") break
    for (const c of m.contents) if (c._tag === "function_result") (out ??= []).unshift(c)
  }
  return out ?? []
}

/** The name of the call a result answers, from the turn's messages (input, then history). */
const callName = (turn: Turn, callId: string): string | undefined => {
  for (const list of [turn.input, turn.history]) {
    for (let i = list.length - 1; i >= 0; i--) {
      for (const c of list[i]!.contents) if (c._tag === "function_call" && c.callId === callId) return c.name
    }
  }
  return undefined
}

/** Whitespace-separated words, counted without splitting (this runs on every turn). */
const countTokens = (s: string) => {
  let count = 0
  let inWord = false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    // What `\s` matches below U+00A1; other white space (rare in prompts) counts as a word character.
    const space = c === 32 || (c >= 9 && c <= 13) || c === 160
    if (!space && !inWord) count++
    inWord = !space
  }
  // As `s.trim().split(/\s+/).length` counted: white space alone is one (empty) word.
  return count === 0 && s.length > 0 ? 1 : count
}

interface Plan {
  readonly contents: ReadonlyArray<Content>
  readonly text: string
  readonly finishReason: "stop" | "tool_calls"
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v)

/** `tool_choice` in any of its shapes (Responses, Chat Completions, `allowed_tools`). */
interface Choice {
  readonly mode: "none" | "auto" | "required"
  readonly named?: string
  readonly allowed?: ReadonlySet<string>
}

const functionName = (v: Obj): string | undefined => {
  if (typeof v.name === "string") return v.name
  const f = v.function
  return isObj(f) && typeof f.name === "string" ? f.name : undefined
}

const choiceOf = (raw: unknown): Choice => {
  if (raw === "none" || raw === "required" || raw === "auto") return { mode: raw }
  if (!isObj(raw)) return { mode: "auto" }
  if (raw.type === "allowed_tools") {
    const tools = Array.isArray(raw.tools) ? raw.tools : []
    const names = tools.flatMap((t) => (isObj(t) ? [functionName(t)].filter((n) => n !== undefined) : []))
    const mode = raw.mode === "required" || raw.mode === "none" ? raw.mode : "auto"
    return { mode, allowed: new Set(names) }
  }
  const named = functionName(raw)
  return named === undefined ? { mode: "auto" } : { mode: "required", named }
}

// Words of a tool name that say nothing about what it is for ("get_weather" is about weather).
const genericWords: ReadonlySet<string> = new Set([
  "get",
  "set",
  "fetch",
  "do",
  "run",
  "tool",
  "call",
  "make",
  "to",
  "of",
  "by",
  "for",
  "the",
  "a",
  "an",
  "and",
  "or",
  "with",
  "from",
  "in",
  "on",
  "is",
  "it",
  "my",
  "api",
  "func",
  "function",
  "current",
  "info",
  "data",
  "this",
  "that",
  "what",
  "when",
  "where",
  "which",
  "who",
  "how",
  "your",
  "about",
  "given",
  "returns",
  "return"
])

const nameWords = (toolName: string) =>
  wordsOf(toolName.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " "))
    .filter((w) => w.length >= 3 && !genericWords.has(w))

const mentions = (said: ReadonlySet<string>, word: string) => {
  if (said.has(word)) return true
  // A plural or verb form ("weathers", "searching") still mentions it.
  for (const s of said) if (s.length >= 4 && word.length >= 4 && (s.startsWith(word) || word.startsWith(s))) return true
  return false
}

/** How plainly the prompt asks for a tool: 2 per word of its name, 1 per significant word of its description. */
const relevance = (tool: ToolDefinition, lower: string, said: ReadonlySet<string>): number => {
  const toolName = tool.name.toLowerCase()
  if (lower.includes(`call ${toolName}`) || lower.includes(`use ${toolName}`)) return 100
  if (lower.includes(toolName)) return 50
  let score = 0
  for (const w of new Set(nameWords(tool.name))) if (mentions(said, w)) score += 2
  if (tool.description !== undefined) {
    for (const w of new Set(wordsOf(tool.description))) {
      if (w.length >= 5 && !genericWords.has(w) && mentions(said, w)) score += 1
    }
  }
  return score
}

/** The function tool this turn calls, per `tool_choice` and the prompt; undefined for a text answer. */
const toolToCall = (turn: Turn, said: string): ToolDefinition | undefined => {
  const offered = turn.options.tools ?? []
  const choice = choiceOf(turn.options.toolChoice)
  if (choice.mode === "none") return undefined
  if (choice.named !== undefined) return offered.find((t) => t.name === choice.named) ?? { name: choice.named }
  const allowed = choice.allowed
  const candidates = allowed === undefined ? offered : offered.filter((t) => allowed.has(t.name))
  if (candidates.length === 0) return undefined
  const lower = said.toLowerCase()
  const words = new Set(wordsOf(said))
  let best: ToolDefinition | undefined
  let bestScore = 0
  for (const tool of candidates) {
    const score = relevance(tool, lower, words)
    if (score > bestScore) {
      best = tool
      bestScore = score
    }
  }
  if (best !== undefined && bestScore >= 2) return best
  return choice.mode === "required" ? candidates[0] : undefined
}

/** The JSON schema a structured answer must follow, `object` for `json_object`, undefined for text. */
const formatOf = (raw: unknown): { readonly schema: unknown } | "object" | undefined => {
  if (!isObj(raw)) return undefined
  if (raw.type === "json_object") return "object"
  if (raw.type !== "json_schema") return undefined
  // Responses: `{ type, name, schema }`; Chat Completions: `{ type, json_schema: { name, schema } }`.
  if ("schema" in raw) return { schema: raw.schema }
  return isObj(raw.json_schema) ? { schema: raw.json_schema.schema } : { schema: {} }
}

/** The answer as text, or as JSON when the turn asks for structured output. */
const answer = (turn: Turn, text: string, hints: string): Plan => {
  const format = turn.options.textFormat === undefined ? undefined : formatOf(turn.options.textFormat)
  if (format === undefined) return { contents: [], text, finishReason: "stop" }
  const value = format === "object" ? { response: text } : valueFor(format.schema, { text: hints })
  return { contents: [], text: JSON.stringify(value), finishReason: "stop" }
}

const plan = (turn: Turn): Plan => {
  const results = pendingResults(turn.input)
  if (results.length > 0) {
    const text = results.map((r) => {
      const called = callName(turn, r.callId)
      return `The tool call ${r.callId}${called === undefined ? "" : ` (${called})`} returned: ${r.result}`
    }).join("\n")
    return answer(turn, text, results.map((r) => r.result).join(" "))
  }
  const said = lastUserText(turn.input, { attachments: true })
  const lower = said.toLowerCase()
  const wanted = turn.options.tools === undefined && turn.options.toolChoice === undefined ?
    undefined :
    toolToCall(turn, said)
  if (wanted !== undefined) {
    const callId = `call_${hash(`${turn.sessionId ?? ""}:${wanted.name}:${said}`).toString(16)}`
    const args = argumentsFor(wanted.parameters, { text: said })
    return {
      contents: [{ _tag: "function_call", callId, name: wanted.name, arguments: JSON.stringify(args) }],
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
  // The input may carry the whole conversation (Chat Completions): its user messages count too.
  let turns = 0
  for (const m of turn.history) if (m.role === "user") turns++
  for (const m of turn.input) if (m.role === "user") turns++
  turns = Math.max(turns, 1)
  const where = turn.context.channel
  const text = said.length === 0 ?
    `I received a message with no text (turn ${turns} on ${where}).` :
    `You said: "${said}". This is turn ${turns} of this conversation, over the ${where} channel.`
  return answer(turn, text, said)
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
  // Computed when asked for (it is pure and quick): the turn continues from a ready value, no fiber step.
  run: (turn) => {
    try {
      return Effect.succeed(run(turn))
    } catch (defect) {
      return Effect.die(defect)
    }
  },
  stream: (turn) => Stream.suspend(() => Stream.fromIterable(stream(turn))),
  updates: (turn) => Effect.sync(() => stream(turn))
})

export const layer: Layer.Layer<Target> = Agent.layer(agent)
