/**
 * The SDK's `AgentExecutor` on the host: each A2A message is a turn in the session named by its `contextId`
 * (isolation key `a2a:<contextId>`, scoped to the caller). The reply streams as appended chunks of one
 * `response` artifact, replaced by the whole text when the turn ends, and the task completes with the reply as
 * its status message; a failed turn fails the task with the error's code and message. A running turn can be
 * cancelled (CancelTask): its fiber is interrupted, which cancels the turn (`onDisconnect: "cancel"`).
 */
import type { Message, Part } from "@a2a-js/sdk"
import { Role, TaskState } from "@a2a-js/sdk"
import type { AgentExecutor, ExecutionEventBus, RequestContext } from "@a2a-js/sdk/server"
import { AgentEvent } from "@a2a-js/sdk/server"
import type { Fiber } from "effect"
import { Effect, Either, FiberId, Option, Stream } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import { isolationKey } from "../../domain/Ids.js"
import { responseText, userMessage } from "../../domain/Message.js"
import { callerScopedKey } from "../../http/CallerScope.js"
import { describeTurnError } from "../../http/TurnErrors.js"
import { callerStateKey } from "./TaskStore.js"

export const textPart = (text: string): Part => ({
  content: { $case: "text", value: text },
  metadata: {},
  filename: "",
  mediaType: "text/plain"
})

/** The text a message carries: its text parts, and data parts as JSON. */
export const messageText = (message: Message): string =>
  message.parts.map((part) => {
    const content = part.content
    if (content === undefined) return ""
    if (content.$case === "text") return content.value
    if (content.$case === "data") return JSON.stringify(content.value)
    return ""
  }).filter((text) => text.length > 0).join("\n")

const agentMessage = (taskId: string, contextId: string, text: string): Message => ({
  messageId: crypto.randomUUID(),
  contextId,
  taskId,
  role: Role.ROLE_AGENT,
  parts: [textPart(text)],
  metadata: {},
  extensions: [],
  referenceTaskIds: []
})

const now = () => new Date().toISOString()

export interface Options {
  readonly ctx: ChannelContext
  /** Forks a turn in the channel's scope. */
  readonly runFork: <A>(effect: Effect.Effect<A>) => Fiber.RuntimeFiber<A>
}

export const make = (options: Options): AgentExecutor => {
  const { ctx, runFork } = options
  const name = ctx.channel
  // Turns running now, by task id: what CancelTask interrupts. An entry lives as long as its turn.
  const running = new Map<string, Fiber.RuntimeFiber<void>>()

  const status = (bus: ExecutionEventBus, taskId: string, contextId: string, state: TaskState, text?: string) =>
    bus.publish(AgentEvent.statusUpdate({
      taskId,
      contextId,
      status: {
        state,
        message: text === undefined ? undefined : agentMessage(taskId, contextId, text),
        timestamp: now()
      },
      metadata: {}
    }))

  const artifact = (bus: ExecutionEventBus, taskId: string, contextId: string, text: string, append: boolean) =>
    bus.publish(AgentEvent.artifactUpdate({
      taskId,
      contextId,
      artifact: {
        artifactId: "response",
        name: "response",
        description: "",
        parts: [textPart(text)],
        metadata: {},
        extensions: []
      },
      append,
      lastChunk: !append,
      metadata: {}
    }))

  const turn = (context: RequestContext, bus: ExecutionEventBus): Effect.Effect<void> => {
    const { contextId, taskId } = context
    return Effect.gen(function*() {
      const caller = context.context.state.get(callerStateKey)
      const key = isolationKey(callerScopedKey(typeof caller === "string" ? caller : undefined, `${name}:${contextId}`))
      if (Either.isLeft(key)) {
        status(bus, taskId, contextId, TaskState.TASK_STATE_REJECTED, `invalid_context_id: ${key.left.message}`)
        return
      }
      const text = messageText(context.userMessage)
      if (text.trim().length === 0) {
        status(bus, taskId, contextId, TaskState.TASK_STATE_REJECTED, "invalid_request: the message has no text")
        return
      }
      const request: ChannelRequest = {
        channel: name,
        operation: "SendMessage",
        input: [userMessage(text)],
        // A context id the SDK minted (the caller sent none) names a session nothing is stored under yet.
        session: context.request.message?.contextId ?
          { isolationKey: key.right } :
          { isolationKey: key.right, fresh: true },
        attributes: { context_id: contextId, task_id: taskId },
        stream: true,
        // Interrupting this fiber (CancelTask) cancels the turn.
        onDisconnect: "cancel"
      }
      const started = yield* Effect.either(ctx.runStream(request, context.request))
      if (Either.isLeft(started)) {
        const parts = describeTurnError(started.left)
        status(bus, taskId, contextId, TaskState.TASK_STATE_FAILED, `${parts.code}: ${parts.message}`)
        return
      }
      status(bus, taskId, contextId, TaskState.TASK_STATE_WORKING)
      let chunks = 0
      const outcome = yield* Effect.either(Effect.zipRight(
        Stream.runForEach(started.right.updates, (update) =>
          Effect.sync(() => {
            let chunk = ""
            for (const part of update.contents) if (part._tag === "text") chunk += part.text
            if (chunk.length === 0) return
            artifact(bus, taskId, contextId, chunk, chunks > 0)
            chunks++
          })),
        started.right.result
      ))
      if (Either.isLeft(outcome)) {
        const parts = describeTurnError(outcome.left)
        const state = outcome.left._tag === "TurnCancelled" && parts.code === "turn_cancelled" ?
          TaskState.TASK_STATE_CANCELED :
          TaskState.TASK_STATE_FAILED
        status(bus, taskId, contextId, state, `${parts.code}: ${parts.message}`)
        return
      }
      const { originating } = outcome.right
      const reply = Option.isSome(originating) ? responseText(originating.value.response) : ""
      // The whole reply replaces the streamed chunks: a stored task holds it as one part.
      artifact(bus, taskId, contextId, reply, false)
      status(bus, taskId, contextId, TaskState.TASK_STATE_COMPLETED, reply)
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => status(bus, taskId, contextId, TaskState.TASK_STATE_CANCELED, "the task was cancelled"))
      )
    )
  }

  return {
    execute: (context, bus) => {
      // Every execution starts with the task (the SDK requires it first, for follow-ups too).
      bus.publish(AgentEvent.task(
        context.task ?? {
          id: context.taskId,
          contextId: context.contextId,
          status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() },
          artifacts: [],
          history: [context.userMessage],
          metadata: {}
        }
      ))
      const fiber = runFork(turn(context, bus))
      running.set(context.taskId, fiber)
      return new Promise<void>((resolve) =>
        fiber.addObserver(() => {
          running.delete(context.taskId)
          resolve()
        })
      )
    },
    cancelTask: (taskId) => {
      const fiber = running.get(taskId)
      if (fiber === undefined) return Promise.resolve()
      // The turn's interruption publishes the cancelled status; the SDK waits for it on the bus.
      return new Promise<void>((resolve) => {
        fiber.addObserver(() => resolve())
        fiber.unsafeInterruptAsFork(FiberId.none)
      })
    }
  }
}
