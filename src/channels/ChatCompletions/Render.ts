/**
 * Chat Completions output: the `chat.completion` object, and the `chat.completion.chunk`s of a stream.
 */
import type { FunctionCallContent, Usage } from "../../domain/Content.js"
import type { AgentResponse, FinishReason } from "../../domain/Message.js"

/** What every object of one completion shares. */
export interface Meta {
  readonly id: string
  /** Unix seconds. */
  readonly created: number
  readonly model: string
}

type Obj = Record<string, unknown>

/**
 * The calls the caller is to run: function calls without a result in the same response (a call the target ran
 * itself, like the default agent's `roll_die`, comes with its result and is not the caller's).
 */
export const clientCalls = (response: AgentResponse): ReadonlyArray<FunctionCallContent> => {
  const calls: Array<FunctionCallContent> = []
  const answered = new Set<string>()
  for (const m of response.messages) {
    for (const c of m.contents) {
      if (c._tag === "function_call") calls.push(c)
      else if (c._tag === "function_result") answered.add(c.callId)
    }
  }
  return answered.size === 0 ? calls : calls.filter((c) => !answered.has(c.callId))
}

/** The assistant's text: the text parts of its messages. */
export const textOf = (response: AgentResponse): string => {
  let out = ""
  for (const m of response.messages) {
    if (m.role !== "assistant") continue
    for (const c of m.contents) if (c._tag === "text") out += c.text
  }
  return out
}

/** OpenAI's finish reasons: `error` has no counterpart, a response with calls to run ends in `tool_calls`. */
export const finishReasonOf = (reason: FinishReason | undefined, hasCalls: boolean): string => {
  if (hasCalls) return "tool_calls"
  switch (reason) {
    case "length":
    case "content_filter":
    case "tool_calls":
      return reason
    default:
      return "stop"
  }
}

export const usageJson = (usage: Usage | undefined) => ({
  prompt_tokens: usage?.inputTokens ?? 0,
  completion_tokens: usage?.outputTokens ?? 0,
  total_tokens: usage?.totalTokens ?? 0
})

export const toolCallsJson = (calls: ReadonlyArray<FunctionCallContent>) =>
  calls.map((c) => ({ id: c.callId, type: "function", function: { name: c.name, arguments: c.arguments } }))

/** A whole completion; `response` undefined when the reply went to other destinations only. */
export const completion = (meta: Meta, response: AgentResponse | undefined, usage: Usage | undefined): Obj => {
  const calls = response === undefined ? [] : clientCalls(response)
  const text = response === undefined ? "" : textOf(response)
  const message: Obj = {
    role: "assistant",
    content: text.length === 0 && calls.length > 0 ? null : text,
    refusal: null
  }
  if (calls.length > 0) message.tool_calls = toolCallsJson(calls)
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    choices: [{
      index: 0,
      message,
      logprobs: null,
      finish_reason: finishReasonOf(response?.finishReason, calls.length > 0)
    }],
    usage: usageJson(usage ?? response?.usage),
    system_fingerprint: null
  }
}

/** One `chat.completion.chunk` as an SSE frame; `usage: null` on every chunk when the final one carries usage. */
export const chunkFrame = (
  meta: Meta,
  choice: { readonly delta: Obj; readonly finish_reason: string | null } | undefined,
  usage: Obj | null | undefined
): string => {
  const chunk: Obj = {
    id: meta.id,
    object: "chat.completion.chunk",
    created: meta.created,
    model: meta.model,
    system_fingerprint: null,
    choices: choice === undefined
      ? []
      : [{ index: 0, delta: choice.delta, logprobs: null, finish_reason: choice.finish_reason }]
  }
  if (usage !== undefined) chunk.usage = usage
  return `data: ${JSON.stringify(chunk)}\n\n`
}

export const DONE = "data: [DONE]\n\n"
