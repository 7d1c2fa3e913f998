/**
 * Rendering: the `ResponseResource` (every field the spec requires, typed as it requires), output items from
 * an agent response, and the streaming event sequence from agent updates.
 *
 * Reasoning streams as `response.reasoning_summary_*` events: the spec's `response.reasoning.delta` is not
 * accepted by the official client and the client's `response.reasoning_text.delta` is not in the spec; the
 * summary events are in both.
 */
import type { Content, Usage } from "../../domain/Content.js"
import type { AgentResponse, AgentResponseUpdate, FinishReason } from "../../domain/Message.js"
import type { EpochMillis } from "../../domain/Time.js"
import { toEpochSeconds } from "../../domain/Time.js"
import type { CreateResponseBody } from "./Wire.js"

type Obj = Record<string, unknown>

export type Status = "queued" | "in_progress" | "completed" | "failed" | "incomplete" | "cancelled"

/**
 * The request-derived part of a response: everything but status, output, usage and errors. Its `created_at` is
 * already the wire's seconds; the host's own times are `EpochMillis`, converted here and nowhere else. Its fields
 * are in the resource's key order (`resource` writes them in this order).
 */
export interface Skeleton {
  readonly id: string
  readonly created_at: number
  readonly model: string
  readonly previous_response_id: string | null
  readonly instructions: unknown
  readonly tools: ReadonlyArray<Obj>
  readonly tool_choice: unknown
  readonly truncation: unknown
  readonly parallel_tool_calls: unknown
  readonly text: Obj
  readonly top_p: unknown
  readonly presence_penalty: unknown
  readonly frequency_penalty: unknown
  readonly top_logprobs: unknown
  readonly temperature: unknown
  readonly reasoning: Obj | null
  readonly max_output_tokens: unknown
  readonly max_tool_calls: unknown
  readonly store: unknown
  readonly background: unknown
  readonly service_tier: unknown
  readonly metadata: unknown
  readonly safety_identifier: unknown
  readonly prompt_cache_key: unknown
  readonly user: unknown
  readonly conversation: { readonly id: string } | undefined
}

export const makeSkeleton = (
  id: string,
  createdAt: EpochMillis,
  body: CreateResponseBody,
  defaultModel: string
): Skeleton => {
  const format = body.text?.format ?? { type: "text" }
  const text: Obj = { format: format.type === "json_schema" ? { description: null, strict: null, ...format } : format }
  if (body.text?.verbosity != null) text["verbosity"] = body.text.verbosity
  return {
    id,
    created_at: toEpochSeconds(createdAt),
    model: body.model ?? defaultModel,
    previous_response_id: body.previous_response_id ?? null,
    instructions: body.instructions ?? null,
    tools: (body.tools ?? []).map((tool) => ({
      type: "function",
      name: tool.name,
      description: tool.description ?? null,
      parameters: tool.parameters ?? null,
      strict: tool.strict ?? null
    })),
    tool_choice: body.tool_choice ?? "auto",
    truncation: body.truncation ?? "disabled",
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    text,
    top_p: body.top_p ?? 1,
    presence_penalty: body.presence_penalty ?? 0,
    frequency_penalty: body.frequency_penalty ?? 0,
    top_logprobs: body.top_logprobs ?? 0,
    temperature: body.temperature ?? 1,
    reasoning: body.reasoning == null
      ? null
      : { effort: body.reasoning.effort ?? null, summary: body.reasoning.summary ?? null },
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: body.max_tool_calls ?? null,
    store: body.store ?? true,
    background: body.background ?? false,
    service_tier: body.service_tier ?? "default",
    metadata: body.metadata ?? {},
    safety_identifier: body.safety_identifier ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    user: body.user ?? null,
    conversation: body.conversation == null ?
      undefined :
      { id: typeof body.conversation === "string" ? body.conversation : body.conversation.id }
  }
}

export const usageJson = (usage: Usage | undefined): Obj | null =>
  usage === undefined ? null : {
    input_tokens: Math.round(usage.inputTokens),
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: Math.round(usage.outputTokens),
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: Math.round(usage.totalTokens)
  }

export interface Outcome {
  readonly status: Status
  readonly output: ReadonlyArray<Obj>
  readonly usage?: Obj | null
  readonly error?: { readonly code: string; readonly message: string } | null
  readonly incompleteReason?: string
  readonly completedAt?: EpochMillis | null
  readonly metadata?: Record<string, string>
}

/**
 * The resource: one object literal in the wire's key order (what spreading the skeleton gave, `conversation` last
 * when there is one). A spread of the skeleton's ~30 keys, then `JSON.stringify` of the copy, cost ~2.5x as much
 * per response (measured: ~10 µs against ~4 µs).
 */
export const resource = (skeleton: Skeleton, outcome: Outcome): Obj => {
  const built: Obj = {
    id: skeleton.id,
    object: "response",
    created_at: skeleton.created_at,
    completed_at: outcome.completedAt == null ? null : toEpochSeconds(outcome.completedAt),
    status: outcome.status,
    incomplete_details: outcome.incompleteReason === undefined ? null : { reason: outcome.incompleteReason },
    model: skeleton.model,
    previous_response_id: skeleton.previous_response_id,
    instructions: skeleton.instructions,
    output: outcome.output,
    error: outcome.error ?? null,
    tools: skeleton.tools,
    tool_choice: skeleton.tool_choice,
    truncation: skeleton.truncation,
    parallel_tool_calls: skeleton.parallel_tool_calls,
    text: skeleton.text,
    top_p: skeleton.top_p,
    presence_penalty: skeleton.presence_penalty,
    frequency_penalty: skeleton.frequency_penalty,
    top_logprobs: skeleton.top_logprobs,
    temperature: skeleton.temperature,
    reasoning: skeleton.reasoning,
    usage: outcome.usage ?? null,
    max_output_tokens: skeleton.max_output_tokens,
    max_tool_calls: skeleton.max_tool_calls,
    store: skeleton.store,
    background: skeleton.background,
    service_tier: skeleton.service_tier,
    metadata: outcome.metadata === undefined ? skeleton.metadata : outcome.metadata,
    safety_identifier: skeleton.safety_identifier,
    prompt_cache_key: skeleton.prompt_cache_key,
    user: skeleton.user
  }
  if (skeleton.conversation !== undefined) built["conversation"] = skeleton.conversation
  return built
}

/** The status a finish reason gives a response, and the incomplete reason if any. */
export const statusOf = (finish: FinishReason | undefined): { status: Status; incompleteReason?: string } => {
  if (finish === "length") return { status: "incomplete", incompleteReason: "max_output_tokens" }
  if (finish === "content_filter") return { status: "incomplete", incompleteReason: "content_filter" }
  return { status: "completed" }
}

const isUrlCitation = (a: unknown): boolean => {
  if (a === null || typeof a !== "object") return false
  const o = a as Obj
  return o["type"] === "url_citation" && typeof o["url"] === "string" && typeof o["title"] === "string" &&
    Number.isInteger(o["start_index"]) && Number.isInteger(o["end_index"])
}

/** Item ids derive from the response id, so a replayed or re-rendered response names its items the same. */
export const itemId = (responseId: string, prefix: string, index: number) =>
  `${prefix}_${responseId.startsWith("resp_") ? responseId.slice(5) : responseId}_${index}`

const outputText = (text: string, annotations?: ReadonlyArray<unknown>): Obj => ({
  type: "output_text",
  text,
  annotations: annotations === undefined ? [] : annotations.filter(isUrlCitation),
  logprobs: []
})

/** Output items of a whole response (non-streaming, and out-of-stream rendering). */
export const outputItems = (responseId: string, response: AgentResponse, itemStatus: string): Array<Obj> => {
  const items: Array<Obj> = []
  for (const message of response.messages) {
    if (message.role !== "assistant" && message.role !== "tool") continue
    let parts: Array<Obj> | undefined
    const closeMessage = () => {
      if (parts === undefined) return
      items.push({
        type: "message",
        id: itemId(responseId, "msg", items.length),
        status: itemStatus,
        role: "assistant",
        content: parts
      })
      parts = undefined
    }
    for (const part of message.contents) {
      switch (part._tag) {
        case "text":
          if (message.role !== "assistant") break
          parts ??= []
          parts.push(outputText(part.text, part.annotations))
          break
        case "uri":
          if (message.role !== "assistant") break
          parts ??= []
          parts.push(outputText(part.uri))
          break
        case "reasoning":
          closeMessage()
          items.push({
            type: "reasoning",
            id: itemId(responseId, "rs", items.length),
            summary: [{ type: "summary_text", text: part.text }]
          })
          break
        case "function_call":
          closeMessage()
          items.push(functionCallItem(responseId, items.length, part, "completed"))
          break
        case "function_result":
          closeMessage()
          items.push(functionOutputItem(responseId, items.length, part))
          break
        default:
          break
      }
    }
    closeMessage()
  }
  return items
}

const functionCallItem = (
  responseId: string,
  index: number,
  part: Extract<Content, { _tag: "function_call" }>,
  status: string
): Obj => ({
  type: "function_call",
  id: itemId(responseId, "fc", index),
  call_id: part.callId,
  name: part.name,
  arguments: status === "completed" ? part.arguments : "",
  status
})

const functionOutputItem = (
  responseId: string,
  index: number,
  part: Extract<Content, { _tag: "function_result" }>
): Obj => ({
  type: "function_call_output",
  id: itemId(responseId, "fco", index),
  call_id: part.callId,
  output: part.result,
  status: "completed"
})

/** One SSE frame for an event; the event JSON never holds a newline, so one `data:` line suffices. */
export const eventFrame = (type: string, json: string): string => `event: ${type}\ndata: ${json}\n\n`

/** A rendered event: its sequence number, type and JSON. */
export interface RenderedEvent {
  readonly sequence: number
  readonly type: string
  readonly json: string
}

interface OpenMessage {
  readonly kind: "message"
  readonly id: string
  readonly index: number
  readonly key: string | undefined
  readonly parts: Array<Obj>
  text: string
  annotations: Array<unknown> | undefined
  textOpen: boolean
}

interface OpenReasoning {
  readonly kind: "reasoning"
  readonly id: string
  readonly index: number
  readonly key: string | undefined
  text: string
}

/**
 * Turns agent updates into Responses stream events. Stateful: it numbers events, opens and closes output
 * items, and keeps the finished items for the terminal event. Per text delta it renders one event.
 */
export class StreamRenderer {
  private sequence = 0
  private readonly output: Array<Obj> = []
  private open: OpenMessage | OpenReasoning | undefined = undefined
  private finish: FinishReason | undefined = undefined
  private usage: Usage | undefined = undefined

  constructor(readonly skeleton: Skeleton) {}

  get lastSequence(): number {
    return this.sequence
  }

  private push(out: Array<RenderedEvent>, type: string, body: Obj): void {
    const sequence = ++this.sequence
    out.push({ sequence, type, json: JSON.stringify({ type, sequence_number: sequence, ...body }) })
  }

  /** `response.created` (queued or in progress) and `response.in_progress`. */
  start(initial: "queued" | "in_progress"): Array<RenderedEvent> {
    const out: Array<RenderedEvent> = []
    // The resource is serialised once when both events carry the same one (a foreground stream).
    const inProgress = JSON.stringify(resource(this.skeleton, { status: "in_progress", output: [] }))
    const created = initial === "in_progress" ?
      inProgress :
      JSON.stringify(resource(this.skeleton, { status: initial, output: [] }))
    this.pushResponse(out, "response.created", created)
    this.pushResponse(out, "response.in_progress", inProgress)
    return out
  }

  /** An event whose only field is `response`, already serialised: the JSON `push` would build. */
  private pushResponse(out: Array<RenderedEvent>, type: string, response: string): void {
    const sequence = ++this.sequence
    out.push({ sequence, type, json: `{"type":"${type}","sequence_number":${sequence},"response":${response}}` })
  }

  private closeOpen(out: Array<RenderedEvent>, status: string): void {
    const open = this.open
    if (open === undefined) return
    this.open = undefined
    if (open.kind === "message") {
      if (open.textOpen) this.closeText(out, open)
      const item = { type: "message", id: open.id, status, role: "assistant", content: open.parts }
      this.output.push(item)
      this.push(out, "response.output_item.done", { output_index: open.index, item })
    } else {
      const part = { type: "summary_text", text: open.text }
      const base = { item_id: open.id, output_index: open.index, summary_index: 0 }
      this.push(out, "response.reasoning_summary_text.done", { ...base, text: open.text })
      this.push(out, "response.reasoning_summary_part.done", { ...base, part })
      const item = { type: "reasoning", id: open.id, summary: [part] }
      this.output.push(item)
      this.push(out, "response.output_item.done", { output_index: open.index, item })
    }
  }

  private closeText(out: Array<RenderedEvent>, open: OpenMessage): void {
    const part = outputText(open.text, open.annotations)
    const contentIndex = open.parts.length
    const base = { item_id: open.id, output_index: open.index, content_index: contentIndex }
    this.push(out, "response.output_text.done", { ...base, text: open.text, logprobs: [] })
    this.push(out, "response.content_part.done", { ...base, part })
    open.parts.push(part)
    open.textOpen = false
    open.text = ""
    open.annotations = undefined
  }

  private openMessage(out: Array<RenderedEvent>, key: string | undefined): OpenMessage {
    const index = this.output.length
    const open: OpenMessage = {
      kind: "message",
      id: itemId(this.skeleton.id, "msg", index),
      index,
      key,
      parts: [],
      text: "",
      annotations: undefined,
      textOpen: false
    }
    this.open = open
    this.push(out, "response.output_item.added", {
      output_index: index,
      item: { type: "message", id: open.id, status: "in_progress", role: "assistant", content: [] }
    })
    return open
  }

  private text(out: Array<RenderedEvent>, key: string | undefined, text: string, annotations?: ReadonlyArray<unknown>) {
    let open = this.open
    if (open === undefined || open.kind !== "message" || open.key !== key) {
      this.closeOpen(out, "completed")
      open = this.openMessage(out, key)
    }
    if (!open.textOpen) {
      open.textOpen = true
      this.push(out, "response.content_part.added", {
        item_id: open.id,
        output_index: open.index,
        content_index: open.parts.length,
        part: outputText("")
      })
    }
    if (annotations !== undefined) (open.annotations ??= []).push(...annotations)
    if (text.length === 0) return
    open.text += text
    const sequence = ++this.sequence
    // The hot path: one string build, no intermediate object.
    out.push({
      sequence,
      type: "response.output_text.delta",
      json:
        `{"type":"response.output_text.delta","sequence_number":${sequence},"item_id":"${open.id}","output_index":${open.index},"content_index":${open.parts.length},"delta":${
          JSON.stringify(text)
        },"logprobs":[]}`
    })
  }

  private reasoning(out: Array<RenderedEvent>, key: string | undefined, text: string) {
    let open = this.open
    if (open === undefined || open.kind !== "reasoning" || open.key !== key) {
      this.closeOpen(out, "completed")
      const index = this.output.length
      const reasoning: OpenReasoning = {
        kind: "reasoning",
        id: itemId(this.skeleton.id, "rs", index),
        index,
        key,
        text: ""
      }
      this.open = reasoning
      open = reasoning
      this.push(out, "response.output_item.added", {
        output_index: index,
        item: { type: "reasoning", id: reasoning.id, summary: [] }
      })
      this.push(out, "response.reasoning_summary_part.added", {
        item_id: reasoning.id,
        output_index: index,
        summary_index: 0,
        part: { type: "summary_text", text: "" }
      })
    }
    if (text.length === 0) return
    open.text += text
    this.push(out, "response.reasoning_summary_text.delta", {
      item_id: open.id,
      output_index: open.index,
      summary_index: 0,
      delta: text
    })
  }

  private whole(out: Array<RenderedEvent>, item: Obj, deltas: string | undefined) {
    this.closeOpen(out, "completed")
    const index = this.output.length
    if (deltas !== undefined) {
      this.push(out, "response.output_item.added", {
        output_index: index,
        item: { ...item, arguments: "", status: "in_progress" }
      })
      const base = { item_id: item["id"], output_index: index }
      this.push(out, "response.function_call_arguments.delta", { ...base, delta: deltas })
      this.push(out, "response.function_call_arguments.done", { ...base, arguments: deltas })
    } else {
      this.push(out, "response.output_item.added", { output_index: index, item })
    }
    this.output.push(item)
    this.push(out, "response.output_item.done", { output_index: index, item })
  }

  /** Events for one update (possibly none). */
  update(update: AgentResponseUpdate, out: Array<RenderedEvent>): void {
    if (update.finishReason !== undefined) this.finish = update.finishReason
    const role = update.role ?? "assistant"
    const key = update.messageId
    for (const part of update.contents) {
      switch (part._tag) {
        case "text":
          if (role === "assistant") this.text(out, key, part.text, part.annotations)
          break
        case "uri":
          if (role === "assistant") this.text(out, key, part.uri)
          break
        case "reasoning":
          this.reasoning(out, key, part.text)
          break
        case "function_call": {
          const index = this.output.length + (this.open === undefined ? 0 : 1)
          this.whole(out, functionCallItem(this.skeleton.id, index, part, "completed"), part.arguments)
          break
        }
        case "function_result": {
          const index = this.output.length + (this.open === undefined ? 0 : 1)
          this.whole(out, functionOutputItem(this.skeleton.id, index, part), undefined)
          break
        }
        case "usage":
          this.usage = this.usage === undefined ? part.usage : {
            inputTokens: this.usage.inputTokens + part.usage.inputTokens,
            outputTokens: this.usage.outputTokens + part.usage.outputTokens,
            totalTokens: this.usage.totalTokens + part.usage.totalTokens
          }
          break
        default:
          break
      }
    }
  }

  /** Events for already-rendered items (a reply shaped after the stream, or delivered out-of-band). */
  items(items: ReadonlyArray<Obj>, out: Array<RenderedEvent>): void {
    for (const item of items) {
      this.whole(out, item, undefined)
    }
  }

  /** Closes what is open and renders the terminal event; returns the final resource too. */
  end(
    out: Array<RenderedEvent>,
    terminal: {
      readonly completedAt: EpochMillis
      readonly error?: { readonly code: string; readonly message: string }
      readonly cancelled?: boolean
      /** Ended before the turn finished (`server_shutdown`): `incomplete`, with the output so far. */
      readonly incomplete?: string
      readonly usage?: Usage | undefined
      readonly metadata?: Record<string, string>
    }
  ): Obj {
    const { incompleteReason, status } = terminal.error !== undefined ?
      { status: "failed" as Status, incompleteReason: undefined } :
      terminal.cancelled === true ?
      { status: "cancelled" as Status, incompleteReason: undefined } :
      terminal.incomplete !== undefined ?
      { status: "incomplete" as Status, incompleteReason: terminal.incomplete } :
      statusOf(this.finish)
    this.closeOpen(out, status === "completed" ? "completed" : "incomplete")
    const final = resource(this.skeleton, {
      status,
      output: this.output,
      usage: usageJson(terminal.usage ?? this.usage),
      ...(terminal.error === undefined ? {} : { error: terminal.error }),
      ...(incompleteReason === undefined ? {} : { incompleteReason }),
      ...(terminal.metadata === undefined ? {} : { metadata: terminal.metadata }),
      completedAt: status === "completed" ? terminal.completedAt : null
    })
    const type = status === "failed" ?
      "response.failed" :
      status === "completed" ?
      "response.completed" :
      "response.incomplete"
    // Serialised once: for the terminal event and for storing (`finalJson`).
    this.finalJson = JSON.stringify(final)
    this.pushResponse(out, type, this.finalJson)
    return final
  }

  /** The JSON text of the final resource, once `end` has rendered it. */
  finalJson: string | undefined = undefined
}

/** Event types that end a response's stream. */
export const terminalEventTypes: ReadonlySet<string> = new Set([
  "response.completed",
  "response.failed",
  "response.incomplete"
])

/** Why a response a dead process left unfinished is `incomplete` (`incomplete_details.reason`). */
export const INTERRUPTED_REASON = "server_restarted"

/**
 * Ends a background response whose process died mid-run, from what it stored: the last response snapshot and
 * the stream events so far (`events`, in order). The output items already finished are kept; an item still open
 * (partial text or reasoning) is closed with what it has and status `incomplete`, with the `.done` events a live
 * stream would have sent; then `response.incomplete` with `incomplete_details.reason` = `server_restarted`.
 * Returns the events to append (numbered after the last stored one) and the final resource. If the stored events
 * already end with a terminal event (the process died between storing it and storing the response), that event's
 * response is the final one and nothing is appended.
 */
export const endInterrupted = (
  response: Obj,
  events: ReadonlyArray<{ readonly sequence: number; readonly type: string; readonly data: Obj }>
): { readonly final: Obj; readonly out: Array<RenderedEvent> } => {
  const last = events[events.length - 1]
  if (last !== undefined && terminalEventTypes.has(last.type) && isObj(last.data["response"])) {
    return { final: last.data["response"], out: [] }
  }
  const items = new Map<number, Obj>()
  let open: { index: number; item: Obj; parts: Array<Obj>; text: string; textOpen: boolean } | undefined
  for (const { data, type } of events) {
    const index = typeof data["output_index"] === "number" ? data["output_index"] : -1
    switch (type) {
      case "response.output_item.added":
        if (isObj(data["item"])) open = { index, item: data["item"], parts: [], text: "", textOpen: false }
        break
      case "response.output_item.done":
        if (isObj(data["item"])) items.set(index, data["item"])
        if (open?.index === index) open = undefined
        break
      case "response.content_part.added":
        if (open?.index === index) {
          open.textOpen = true
          open.text = ""
        }
        break
      case "response.content_part.done":
        if (open?.index === index && isObj(data["part"])) {
          open.parts.push(data["part"])
          open.textOpen = false
          open.text = ""
        }
        break
      case "response.output_text.delta":
      case "response.reasoning_summary_text.delta":
        if (open?.index === index && typeof data["delta"] === "string") open.text += data["delta"]
        break
      default:
        break
    }
  }
  let sequence = events.reduce((max, e) => Math.max(max, e.sequence), 0)
  const out: Array<RenderedEvent> = []
  const push = (type: string, body: Obj) => {
    sequence++
    out.push({ sequence, type, json: JSON.stringify({ type, sequence_number: sequence, ...body }) })
  }
  if (open !== undefined && typeof open.item["id"] === "string") {
    const { index, item } = open
    const id = item["id"]
    if (item["type"] === "message") {
      if (open.textOpen) {
        const part = outputText(open.text)
        const base = { item_id: id, output_index: index, content_index: open.parts.length }
        push("response.output_text.done", { ...base, text: open.text, logprobs: [] })
        push("response.content_part.done", { ...base, part })
        open.parts.push(part)
      }
      const done = { type: "message", id, status: "incomplete", role: "assistant", content: open.parts }
      items.set(index, done)
      push("response.output_item.done", { output_index: index, item: done })
    } else if (item["type"] === "reasoning") {
      const part = { type: "summary_text", text: open.text }
      const base = { item_id: id, output_index: index, summary_index: 0 }
      push("response.reasoning_summary_text.done", { ...base, text: open.text })
      push("response.reasoning_summary_part.done", { ...base, part })
      const done = { type: "reasoning", id, summary: [part] }
      items.set(index, done)
      push("response.output_item.done", { output_index: index, item: done })
    }
  }
  const final: Obj = {
    ...response,
    status: "incomplete",
    completed_at: null,
    incomplete_details: { reason: INTERRUPTED_REASON },
    output: [...items.entries()].sort(([a], [b]) => a - b).map(([, item]) => item)
  }
  push("response.incomplete", { response: final })
  return { final, out }
}

const isObj = (value: unknown): value is Obj => value !== null && typeof value === "object" && !Array.isArray(value)
