/**
 * The channel a hosted workflow talks through: `text` and `value` stream outputs to the channel that started
 * the turn, `awaitInput` suspends the execution until the session's next message.
 *
 * Every output and every "waiting for input" mark is an activity, so a replayed execution (after a suspension
 * or a restart) does not emit them twice: the host reads them back from the `WorkflowStore` in order. Call
 * them from the workflow body, one after another (never inside `Effect.all` with concurrency > 1: see
 * docs/WORKFLOWS.md, Effect-TS/effect#6014).
 */
import type { WorkflowEngine } from "@effect/workflow"
import { Activity, DurableDeferred } from "@effect/workflow"
import { Context, Effect, Schema } from "effect"
import type { AgentResponseUpdate } from "../domain/Message.js"
import { Message } from "../domain/Message.js"
import type { WorkflowStoreShape } from "./WorkflowStore.js"

/** What `awaitInput` resumes with: the user's next message in the session. */
export const UserInput = Schema.Struct({
  text: Schema.String,
  messages: Schema.Array(Message)
})
export type UserInput = typeof UserInput.Type

type Durable = WorkflowEngine.WorkflowEngine | WorkflowEngine.WorkflowInstance

export interface WorkflowOutputShape {
  readonly executionId: string
  /** Emits one streaming update (text deltas, a structured `value`, any content). */
  readonly emit: (update: AgentResponseUpdate) => Effect.Effect<void, never, Durable>
  /** Suspends until the session's next message; `prompt` is emitted as text first. */
  readonly awaitInput: (prompt?: string) => Effect.Effect<UserInput, never, Durable>
}

/**
 * Provided by the host to each run of a hosted workflow; counters restart with every replay. Its methods need
 * the running execution (engine and instance), which only the workflow body has.
 *
 * @effect-expect-leaking WorkflowEngine | WorkflowInstance
 */
export class WorkflowOutput extends Context.Tag("effect-agent-host/WorkflowOutput")<
  WorkflowOutput,
  WorkflowOutputShape
>() {}

export const inputName = (n: number) => `WorkflowInput/${n}`

/** The deferred `awaitInput` waits on; the host completes it with the next message. */
export const UserInputDeferred = (name: string) => DurableDeferred.make(name, { success: UserInput })

/** Builds the per-run output channel of one execution. */
export const make = (executionId: string, store: WorkflowStoreShape): WorkflowOutputShape => {
  let outputs = 0
  let inputs = 0
  const emit = (update: AgentResponseUpdate) =>
    Effect.suspend(() => {
      const seq = outputs++
      return Activity.make({
        name: `WorkflowOutput/${seq}`,
        execute: Effect.zipRight(store.appendOutput(executionId, seq, update), store.notify(executionId))
      })
    })
  const awaitInput = (prompt?: string) =>
    Effect.gen(function*() {
      if (prompt !== undefined) yield* emit({ role: "assistant", contents: [{ _tag: "text", text: prompt }] })
      const name = inputName(inputs++)
      yield* Activity.make({
        name: `${name}/ask`,
        execute: Effect.zipRight(store.setWaiting(executionId, name), store.notify(executionId))
      })
      return yield* DurableDeferred.await(UserInputDeferred(name))
    })
  return { executionId, emit, awaitInput }
}

/** Streams text to the channel. */
export const text = (text: string): Effect.Effect<void, never, WorkflowOutput | Durable> =>
  Effect.flatMap(WorkflowOutput, (out) => out.emit({ role: "assistant", contents: [{ _tag: "text", text }] }))

/**
 * Streams a structured value to the channel (`AgentResponseUpdate.value`; the turn's `AgentResponse.value` is
 * the last one). It is stored as JSON, so it must be JSON-safe.
 */
export const value = (value: unknown): Effect.Effect<void, never, WorkflowOutput | Durable> =>
  Effect.flatMap(WorkflowOutput, (out) => out.emit({ contents: [], value }))

export const emit = (update: AgentResponseUpdate): Effect.Effect<void, never, WorkflowOutput | Durable> =>
  Effect.flatMap(WorkflowOutput, (out) => out.emit(update))

/** Suspends the execution until the next message in its session (human in the loop). */
export const awaitInput = (prompt?: string): Effect.Effect<UserInput, never, WorkflowOutput | Durable> =>
  Effect.flatMap(WorkflowOutput, (out) => out.awaitInput(prompt))
