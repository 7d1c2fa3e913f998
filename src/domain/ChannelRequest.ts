/**
 * What a channel hands the host for one turn, and what it gets back.
 */
import { Schema } from "effect"
import { ChannelIdentity, ChannelSession, ResponseTarget } from "./Identity.js"
import type { AgentResponse } from "./Message.js"
import { Message } from "./Message.js"

/** A function tool the caller offers; the caller executes it (client-executed tools). */
export const ToolDefinition = Schema.Struct({
  name: Schema.String,
  description: Schema.optional(Schema.String),
  parameters: Schema.optional(Schema.Unknown),
  strict: Schema.optional(Schema.Boolean)
})
export type ToolDefinition = typeof ToolDefinition.Type

/** Options passed through to the target. */
export const RunOptions = Schema.Struct({
  instructions: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String),
  temperature: Schema.optional(Schema.Number),
  topP: Schema.optional(Schema.Number),
  maxOutputTokens: Schema.optional(Schema.Number),
  toolChoice: Schema.optional(Schema.Unknown),
  parallelToolCalls: Schema.optional(Schema.Boolean),
  tools: Schema.optional(Schema.Array(ToolDefinition)),
  metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  textFormat: Schema.optional(Schema.Unknown)
})
export type RunOptions = typeof RunOptions.Type

/** Request attributes the host reads; channels may add their own. */
export const RequestAttributes = Schema.Struct(
  {
    responseId: Schema.optional(Schema.String),
    previousResponseId: Schema.optional(Schema.String)
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type RequestAttributes = typeof RequestAttributes.Type

export const ChannelRequest = Schema.Struct({
  channel: Schema.String,
  /** `message.create`, `command.invoke`, `invoke`, ... */
  operation: Schema.String,
  input: Schema.Array(Message),
  session: Schema.optional(ChannelSession),
  identity: Schema.optional(ChannelIdentity),
  responseTarget: Schema.optional(ResponseTarget),
  options: Schema.optional(RunOptions),
  attributes: Schema.optional(RequestAttributes),
  stream: Schema.Boolean,
  /**
   * What a caller that goes away (HTTP client disconnect) does to its turn: `continue` (default) lets it run to
   * the end; `cancel` drops it while queued and interrupts it while running.
   */
  onDisconnect: Schema.optional(Schema.Literal("continue", "cancel")),
  /**
   * Set by the host's authorization only, for the turn's request context: the caller's verified claims. What a
   * channel or run hook puts here is dropped before authorization.
   */
  verified: Schema.optional(Schema.Struct({
    claims: Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Array(Schema.String)) }),
    source: Schema.Literal("linker", "channel")
  }))
})
export type ChannelRequest = typeof ChannelRequest.Type

/**
 * The target's untouched result plus the session it ran in. `response` is the agent-shaped view every channel
 * can render; `result` is what the target returned (the same response for agents, the workflow's output for
 * workflows).
 */
export interface HostedRunResult<A = unknown> {
  readonly result: A
  readonly response: AgentResponse
  readonly session: ChannelSession | undefined
  /** The session id the target ran under: the isolation key, or its alias after a reset. */
  readonly sessionId: string | undefined
}
