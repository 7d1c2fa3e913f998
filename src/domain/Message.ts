/**
 * Messages, agent responses and streaming updates.
 */
import { Schema } from "effect"
import type { Usage } from "./Content.js"
import { Content, Usage as UsageSchema } from "./Content.js"
import { ChannelIdentity, ResponseTarget } from "./Identity.js"

export const Role = Schema.Literal("system", "developer", "user", "assistant", "tool")
export type Role = typeof Role.Type

/** Provenance the host stamps on messages it stores: where a message came from and where its reply went. */
export const HostingMetadata = Schema.Struct({
  channel: Schema.optional(Schema.String),
  identity: Schema.optional(ChannelIdentity),
  responseTarget: Schema.optional(ResponseTarget),
  intendedTargets: Schema.optional(Schema.Array(Schema.String)),
  skippedTargets: Schema.optional(Schema.Array(Schema.Struct({ target: Schema.String, reason: Schema.String }))),
  includesOriginating: Schema.optional(Schema.Boolean),
  originatingChannel: Schema.optional(Schema.String)
})
export type HostingMetadata = typeof HostingMetadata.Type

export const Message = Schema.Struct({
  id: Schema.optional(Schema.String),
  role: Role,
  contents: Schema.Array(Content),
  authorName: Schema.optional(Schema.String),
  hosting: Schema.optional(HostingMetadata)
})
export type Message = typeof Message.Type

export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "error")
export type FinishReason = typeof FinishReason.Type

/** A complete answer from a target. `value` carries a structured result (a workflow's output, a parsed object). */
export const AgentResponse = Schema.Struct({
  responseId: Schema.optional(Schema.String),
  messages: Schema.Array(Message),
  usage: Schema.optional(UsageSchema),
  finishReason: Schema.optional(FinishReason),
  value: Schema.optional(Schema.Unknown)
})
export type AgentResponse = typeof AgentResponse.Type

/** One streaming delta. Text parts are deltas; consecutive updates with one `messageId` form one message. */
export const AgentResponseUpdate = Schema.Struct({
  messageId: Schema.optional(Schema.String),
  role: Schema.optional(Role),
  contents: Schema.Array(Content),
  responseId: Schema.optional(Schema.String),
  authorName: Schema.optional(Schema.String),
  finishReason: Schema.optional(FinishReason),
  value: Schema.optional(Schema.Unknown)
})
export type AgentResponseUpdate = typeof AgentResponseUpdate.Type

export const userMessage = (text: string): Message => ({ role: "user", contents: [{ _tag: "text", text }] })

export const assistantMessage = (text: string, id?: string): Message =>
  id === undefined ?
    { role: "assistant", contents: [{ _tag: "text", text }] } :
    { id, role: "assistant", contents: [{ _tag: "text", text }] }

/** The text of the assistant messages of a response. */
export const responseText = (response: AgentResponse): string => {
  let out = ""
  for (const message of response.messages) {
    if (message.role !== "assistant") continue
    for (const part of message.contents) {
      if (part._tag === "text") out += part.text
    }
  }
  return out
}

const addUsage = (a: Usage | undefined, b: Usage): Usage =>
  a === undefined ? b : {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    totalTokens: a.totalTokens + b.totalTokens
  }

/**
 * Folds streaming updates into the response they describe: text deltas of one message are joined, usage is
 * summed, the last structured value wins. Nothing the stream carried is dropped.
 */
export class ResponseAccumulator {
  // `ownText`: the last content is a text part this accumulator made (by merging), so later text may extend it in
  // place rather than copy it again for every delta.
  private readonly messages: Array<
    { id: string | undefined; role: Role; authorName?: string; contents: Array<Content>; ownText?: boolean }
  > = []
  private usage: Usage | undefined = undefined
  private responseId: string | undefined = undefined
  private finishReason: FinishReason | undefined = undefined
  private value: unknown = undefined
  private hasValue = false

  add(update: AgentResponseUpdate): void {
    if (update.responseId !== undefined) this.responseId = update.responseId
    if (update.finishReason !== undefined) this.finishReason = update.finishReason
    if (update.value !== undefined) {
      this.value = update.value
      this.hasValue = true
    }
    const role = update.role ?? "assistant"
    let current = this.messages[this.messages.length - 1]
    for (const part of update.contents) {
      if (part._tag === "usage") {
        this.usage = addUsage(this.usage, part.usage)
        continue
      }
      if (current === undefined || current.id !== update.messageId || current.role !== role) {
        current = update.authorName === undefined ?
          { id: update.messageId, role, contents: [] } :
          { id: update.messageId, role, authorName: update.authorName, contents: [] }
        this.messages.push(current)
      }
      const last = current.contents[current.contents.length - 1]
      if (part._tag === "text" && last !== undefined && last._tag === "text" && part.annotations === undefined) {
        if (current.ownText === true) {
          ;(last as { text: string }).text += part.text
        } else {
          current.contents[current.contents.length - 1] = { ...last, text: last.text + part.text }
          current.ownText = true
        }
      } else if (
        part._tag === "reasoning" && last !== undefined && last._tag === "reasoning"
      ) {
        current.contents[current.contents.length - 1] = { _tag: "reasoning", text: last.text + part.text }
        current.ownText = false
      } else {
        current.contents.push(part)
        current.ownText = false
      }
    }
  }

  done(): AgentResponse {
    const messages: Array<Message> = this.messages.map((m) => {
      const base: { -readonly [K in keyof Message]: Message[K] } = { role: m.role, contents: m.contents }
      if (m.id !== undefined) base.id = m.id
      if (m.authorName !== undefined) base.authorName = m.authorName
      return base
    })
    const response: { -readonly [K in keyof AgentResponse]: AgentResponse[K] } = { messages }
    if (this.responseId !== undefined) response.responseId = this.responseId
    if (this.usage !== undefined) response.usage = this.usage
    if (this.finishReason !== undefined) response.finishReason = this.finishReason
    if (this.hasValue) response.value = this.value
    return response
  }
}

export const responseFromUpdates = (updates: Iterable<AgentResponseUpdate>): AgentResponse => {
  const acc = new ResponseAccumulator()
  for (const update of updates) acc.add(update)
  return acc.done()
}

/**
 * The text of the last user message, its text parts joined by spaces; with `attachments`, a data or URI part reads
 * as `[<media type> attachment]` (what the default agent echoes). Empty when there is no user message.
 */
export const lastUserText = (
  input: ReadonlyArray<Message>,
  options?: { readonly attachments?: boolean }
): string => {
  for (let i = input.length - 1; i >= 0; i--) {
    const message = input[i]!
    if (message.role !== "user") continue
    const parts: Array<string> = []
    for (const part of message.contents) {
      if (part._tag === "text") parts.push(part.text)
      else if (options?.attachments === true && (part._tag === "data" || part._tag === "uri")) {
        parts.push(`[${part.mediaType} attachment]`)
      }
    }
    return parts.join(" ")
  }
  return ""
}
