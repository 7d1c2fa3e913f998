/**
 * Agents: the common target. `Agent.make` builds one from plain functions; `Agent.layer` hosts it.
 */
import { Effect, Layer, Stream } from "effect"
import type { AgentError } from "../domain/Errors.js"
import type { AgentResponse, AgentResponseUpdate } from "../domain/Message.js"
import { ResponseAccumulator } from "../domain/Message.js"
import * as Now from "../internal/Now.js"
import type { TargetSkill, Turn } from "./Target.js"
import { Target } from "./Target.js"

export interface Agent {
  readonly name: string
  /** How the agent introduces itself to callers (e.g. the A2A agent card). */
  readonly description?: string
  readonly skills?: ReadonlyArray<TargetSkill>
  readonly run: (turn: Turn) => Effect.Effect<AgentResponse, AgentError>
  readonly stream: (turn: Turn) => Stream.Stream<AgentResponseUpdate, AgentError>
  /** `stream`'s updates all at once, when the agent has them together (see `TargetShape.updates`). */
  readonly updates?: (turn: Turn) => Effect.Effect<ReadonlyArray<AgentResponseUpdate>, AgentError>
}

interface Introduction {
  readonly name: string
  readonly description?: string
  readonly skills?: ReadonlyArray<TargetSkill>
}

export type MakeOptions =
  | Introduction & {
    readonly run: (turn: Turn) => Effect.Effect<AgentResponse, AgentError>
    readonly stream?: (turn: Turn) => Stream.Stream<AgentResponseUpdate, AgentError>
    /**
     * The streamed updates all at once, for an agent that has them together: streamed turns then run no stream.
     * Without `stream`, the agent's stream is made from it.
     */
    readonly updates?: (turn: Turn) => Effect.Effect<ReadonlyArray<AgentResponseUpdate>, AgentError>
  }
  | Introduction & {
    readonly run?: undefined
    readonly stream: (turn: Turn) => Stream.Stream<AgentResponseUpdate, AgentError>
  }

/** A response as a stream: one update per message, so streaming clients see whole messages at once. */
export const responseToUpdates = (response: AgentResponse): ReadonlyArray<AgentResponseUpdate> => {
  const updates: Array<AgentResponseUpdate> = []
  response.messages.forEach((message, i) => {
    const update: { -readonly [K in keyof AgentResponseUpdate]: AgentResponseUpdate[K] } = {
      messageId: message.id ?? `msg_${i}`,
      role: message.role,
      contents: message.contents
    }
    if (response.responseId !== undefined) update.responseId = response.responseId
    if (message.authorName !== undefined) update.authorName = message.authorName
    updates.push(update)
  })
  const tail: { -readonly [K in keyof AgentResponseUpdate]: AgentResponseUpdate[K] } = { contents: [] }
  if (response.usage !== undefined) tail.contents = [{ _tag: "usage", usage: response.usage }]
  if (response.finishReason !== undefined) tail.finishReason = response.finishReason
  if (response.value !== undefined) tail.value = response.value
  if (tail.contents.length > 0 || tail.finishReason !== undefined || tail.value !== undefined) updates.push(tail)
  return updates
}

/** Builds an agent from a blocking function, a streaming function, or both. */
export const make = (options: MakeOptions): Agent => {
  const introduction = {
    name: options.name,
    ...(options.description === undefined ? {} : { description: options.description }),
    ...(options.skills === undefined ? {} : { skills: options.skills })
  }
  if (options.run !== undefined) {
    const run = options.run
    const updates = options.updates
    if (updates !== undefined) {
      return {
        ...introduction,
        run,
        updates,
        stream: options.stream ?? ((turn) => Stream.flatMap(updates(turn), Stream.fromIterable))
      }
    }
    return {
      ...introduction,
      run,
      stream: options.stream ?? ((turn) => Stream.flatMap(run(turn), (r) => Stream.fromIterable(responseToUpdates(r))))
    }
  }
  const stream = options.stream
  return {
    ...introduction,
    stream,
    run: (turn) =>
      Stream.runFold(stream(turn), new ResponseAccumulator(), (acc, update) => {
        acc.add(update)
        return acc
      }).pipe(Effect.map((acc) => acc.done()))
  }
}

/** Hosts an agent as the host's target. */
export const toTarget = (agent: Agent): Target["Type"] => ({
  kind: "agent",
  name: agent.name,
  ...(agent.description === undefined ? {} : { description: agent.description }),
  ...(agent.skills === undefined ? {} : { skills: agent.skills }),
  run: (turn) => Now.map(agent.run(turn), (response) => ({ response, result: response })),
  stream: agent.stream,
  ...(agent.updates === undefined ? {} : { updates: agent.updates })
})

export const layer = (agent: Agent): Layer.Layer<Target> => Layer.succeed(Target, toTarget(agent))

/** Hosts an agent built by an effect (one that needs services, config, an HTTP client...). */
export const layerEffect = <E, R>(agent: Effect.Effect<Agent, E, R>): Layer.Layer<Target, E, R> =>
  Layer.effect(Target, Effect.map(agent, toTarget))
