/**
 * What the host runs: an agent or a workflow, seen through one shape.
 */
import type { Effect, Stream } from "effect"
import { Context } from "effect"
import type { RunOptions } from "../domain/ChannelRequest.js"
import type { AgentError } from "../domain/Errors.js"
import type { AgentResponse, AgentResponseUpdate, Message } from "../domain/Message.js"
import type { RequestContextValue } from "./RequestContext.js"

/** One turn as a target sees it. */
export interface Turn {
  /** The messages of this turn, stamped with hosting provenance. */
  readonly input: ReadonlyArray<Message>
  /** The session's earlier messages (oldest first), loaded by the host. */
  readonly history: ReadonlyArray<Message>
  /** The session id: the isolation key, or its alias after a reset. Undefined for sessionless turns. */
  readonly sessionId: string | undefined
  readonly options: RunOptions
  readonly context: RequestContextValue
}

/** A target's answer: the agent-shaped view channels render, and the target's own untouched result. */
export interface TargetResult {
  readonly response: AgentResponse
  readonly result: unknown
}

/** Something the target can do, as it introduces itself to callers (the A2A agent card lists these). */
export interface TargetSkill {
  readonly id: string
  readonly name: string
  readonly description: string
  readonly tags?: ReadonlyArray<string>
  readonly examples?: ReadonlyArray<string>
}

/** How a target introduces itself: what channels may show of it (a model list, an agent card). */
export interface TargetInfo {
  readonly kind: "agent" | "workflow"
  readonly name: string
  readonly description?: string
  readonly skills?: ReadonlyArray<TargetSkill>
}

export interface TargetShape extends TargetInfo {
  readonly run: (turn: Turn) => Effect.Effect<TargetResult, AgentError>
  /** Streaming run; the final result is the fold of the updates (`value` carries a structured result). */
  readonly stream: (turn: Turn) => Stream.Stream<AgentResponseUpdate, AgentError>
  /**
   * The same updates as `stream`, all at once, for a target that has them all together (the default agent): a
   * streamed turn then runs no stream of the target's. Absent: `stream` is read.
   */
  readonly updates?: (turn: Turn) => Effect.Effect<ReadonlyArray<AgentResponseUpdate>, AgentError>
}

export class Target extends Context.Tag("effect-agent-host/Target")<Target, TargetShape>() {}
