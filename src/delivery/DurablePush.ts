/**
 * Durable pushes: the `PushScheduler` (the seam in Delivery) backed by the TaskRunner. Each push is one
 * `hosting.push` task: look up the destination channel, shape a private copy with its response hook, push
 * the echoed input (phase 1) and then the reply (phase 2), passing the task's idempotency key. A finished
 * phase is recorded durably, so a retry or restart never repeats it.
 *
 * A task stores only its destination; the reply (request, response, echo) is the task's shared payload, stored
 * once for every destination of the turn (in the same transaction as the first task naming it).
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { ConfigError } from "effect"
import { Context, Duration, Effect, Layer, Option, Schema } from "effect"
import type { ChannelPush } from "../core/Channel.js"
import type { RegisteredChannel } from "../core/Channels.js"
import { Channels } from "../core/Channels.js"
import * as RuntimeMode from "../core/RuntimeMode.js"
import { ChannelRequest, type HostedRunResult } from "../domain/ChannelRequest.js"
import type { HostConfigurationError } from "../domain/Errors.js"
import { PushQueueFull } from "../domain/Errors.js"
import { ChannelIdentity, ChannelSession } from "../domain/Identity.js"
import { AgentResponse } from "../domain/Message.js"
import type { StateWriter } from "../state/sqlite/StateWriter.js"
import type { PushJob } from "./Delivery.js"
import { countedPush, PushRejected, PushScheduler, shapeFor } from "./Delivery.js"
import type { TaskFailure } from "./TaskRunner.js"
import * as TaskRunner from "./TaskRunner.js"
import { TaskFailed } from "./TaskRunner.js"

/** The reply a push delivers, the same for every destination. `result` only when it is not the response itself. */
export const PushBody = Schema.Struct({
  request: ChannelRequest,
  response: AgentResponse,
  result: Schema.optional(Schema.Unknown),
  session: Schema.optional(ChannelSession),
  sessionId: Schema.optional(Schema.String),
  echo: Schema.optional(AgentResponse)
})
export type PushBody = typeof PushBody.Type

/**
 * A push as stored with its task: the destination. The body is the task's shared payload; tasks stored by
 * earlier versions carry it inline instead (still delivered).
 */
export const PushTask = Schema.Struct({
  channel: Schema.String,
  identity: ChannelIdentity,
  request: Schema.optional(ChannelRequest),
  response: Schema.optional(AgentResponse),
  result: Schema.optional(Schema.Unknown),
  session: Schema.optional(ChannelSession),
  sessionId: Schema.optional(Schema.String),
  echo: Schema.optional(AgentResponse)
})
export type PushTask = typeof PushTask.Type

export const pushTask = TaskRunner.define("hosting.push", PushTask)

export const PHASE_ECHO_DONE = 1

export const toBody = (job: PushJob): PushBody => {
  const hosted = job.result
  return {
    request: job.request,
    response: hosted.response,
    ...(hosted.result === hosted.response || hosted.result === undefined ? {} : { result: hosted.result }),
    ...(hosted.session === undefined ? {} : { session: hosted.session }),
    ...(hosted.sessionId === undefined ? {} : { sessionId: hosted.sessionId }),
    ...(job.echo === undefined ? {} : { echo: job.echo.response })
  }
}

export const toTask = (job: PushJob): PushTask => ({
  channel: job.destination.channel,
  identity: job.destination.identity
})

const PushBodyJson = Schema.parseJson(PushBody)
const encodeBody = Schema.encode(PushBodyJson)
const decodeBody = Schema.decode(PushBodyJson)

// Channels register while the host builds, after the runner may have resumed stored tasks: a lookup that finds
// nothing waits (this long at most) for the host to have registered them all.
const channelsRegisteredWait = Duration.seconds(10)

const bodyOf = (task: PushTask, shared: string | undefined): Effect.Effect<PushBody, TaskFailure> => {
  if (shared !== undefined) {
    return Effect.mapError(
      decodeBody(shared),
      (e) => TaskFailed.terminal(`the stored reply does not decode: ${e.message}`)
    )
  }
  if (task.request === undefined || task.response === undefined) {
    return Effect.fail(TaskFailed.terminal("the push task has no reply"))
  }
  return Effect.succeed({ ...task, request: task.request, response: task.response })
}

/** The `retry-after` a request refused for a full push queue is told. */
export const queueFullRetryAfter = Duration.seconds(5)

export const make = Effect.gen(function*() {
  const runner = yield* TaskRunner.TaskRunner
  const capacity = runner.capacity
  const channels = yield* Channels

  const findChannel = (name: string): Effect.Effect<Option.Option<RegisteredChannel>> =>
    channels.whenRegistered(name, channelsRegisteredWait)

  const send = (
    channel: RegisteredChannel,
    push: ChannelPush,
    task: PushTask,
    body: PushBody,
    result: HostedRunResult,
    isEcho: boolean,
    idempotencyKey: string
  ): Effect.Effect<void, TaskFailure> => {
    const shaped = shapeFor(channel, result, {
      request: body.request,
      channel: channel.name,
      destination: task.identity,
      originating: false,
      isEcho
    })
    return Effect.flatMap(
      shaped,
      (r) => countedPush(channel.name, push.push(task.identity, r, { isEcho, idempotencyKey }))
    )
  }

  yield* runner.register(pushTask, (task, context) =>
    Effect.gen(function*() {
      const found = yield* findChannel(task.channel)
      const channel = Option.getOrUndefined(found)
      const push = channel?.contribution.push
      if (channel === undefined || push === undefined) {
        return yield* TaskFailed.terminal(`no channel named "${task.channel}" that can push is registered`)
      }
      const body = yield* bodyOf(task, context.shared)
      const reply: HostedRunResult = {
        result: body.result === undefined ? body.response : body.result,
        response: body.response,
        session: body.session,
        sessionId: body.sessionId
      }
      if (body.echo !== undefined && context.phase < PHASE_ECHO_DONE) {
        const echo: HostedRunResult = { ...reply, result: undefined, response: body.echo }
        yield* send(channel, push, task, body, echo, true, context.idempotencyKey).pipe(
          // A terminal echo failure must not cost the reply; retryable ones retry the task (echo first).
          Effect.catchIf((failure) => !failure.retryable, (failure) =>
            Effect.logWarning("echo push failed terminally; sending the reply without it").pipe(
              Effect.annotateLogs({ channel: task.channel, error: failure.message })
            ))
        )
        yield* context.completePhase(PHASE_ECHO_DONE)
      }
      yield* send(channel, push, task, body, reply, false, context.idempotencyKey)
    }))
  yield* runner.start

  // The body of a delivery's pushes, encoded once: `deliver` schedules every destination with the same result.
  const bodies = new WeakMap<HostedRunResult, { readonly job: PushJob; readonly shared: TaskRunner.SharedPayload }>()
  const sharedOf = (job: PushJob): Effect.Effect<TaskRunner.SharedPayload, PushRejected> =>
    Effect.suspend(() => {
      const known = bodies.get(job.result)
      if (known !== undefined && known.job.request === job.request && known.job.echo === job.echo) {
        return Effect.succeed(known.shared)
      }
      return encodeBody(toBody(job)).pipe(
        Effect.map((json) => {
          const shared = TaskRunner.sharedPayload(json)
          bodies.set(job.result, { job, shared })
          return shared
        }),
        Effect.mapError((e) => new PushRejected({ message: `the reply does not encode: ${e.message}` }))
      )
    })

  return PushScheduler.of({
    admit: Effect.flatMap(runner.accepting, (accepting) =>
      accepting ? Effect.void : Effect.fail(
        new PushQueueFull({
          limit: capacity,
          retryAfter: queueFullRetryAfter,
          message: `too many replies are waiting to be delivered to other channels (limit ${capacity}); ` +
            `try again in ${Duration.format(queueFullRetryAfter)}`
        })
      )),
    schedule: (job) =>
      Effect.flatMap(
        sharedOf(job),
        (shared) =>
          runner.schedule(pushTask, toTask(job), { idempotencyKey: job.idempotencyKey, shared }).pipe(
            Effect.mapError((e) => new PushRejected({ message: e.message })),
            Effect.asVoid
          )
      )
  })
})

/** Pushes through the TaskRunner in context (registers `hosting.push` and starts the runner). */
export const layer: Layer.Layer<PushScheduler, TaskRunner.TaskRunnerError, TaskRunner.TaskRunner | Channels> = Layer
  .effect(PushScheduler, make)

const runnerOptions = Effect.orElseSucceed(TaskRunner.optionsConfig, () => ({}))

/**
 * The in-process runner: pushes survive nothing. Refused in ephemeral runtime mode unless
 * AGENT_HOST_ALLOW_IN_PROCESS_RUNNER=true. A drop-in for `Delivery.layerPushInProcess`.
 */
export const layerMemory: Layer.Layer<
  PushScheduler | TaskRunner.TaskRunner,
  TaskRunner.TaskRunnerError | HostConfigurationError | ConfigError.ConfigError,
  Channels
> = layer.pipe(
  Layer.provideMerge(Layer.unwrapScoped(
    Effect.zipRight(RuntimeMode.checkInProcessRunner, Effect.map(runnerOptions, TaskRunner.layerMemory))
  ))
)

/** The durable runner on the state database in context (`StateDb.layer`: `SqlClient` and `StateWriter`). */
export const layerSqlite: Layer.Layer<
  PushScheduler | TaskRunner.TaskRunner,
  TaskRunner.TaskRunnerError,
  Channels | SqlClient | StateWriter
> = Layer.scopedContext(
  // The runner, then the scheduler on it, in one layer build (`layer` over `unwrapEffect(...)` was 8: cold start).
  Effect.gen(function*() {
    const runner = yield* Layer.buildWithMemoMap(
      TaskRunner.layerSqlite(yield* runnerOptions),
      yield* Layer.CurrentMemoMap,
      yield* Effect.scope
    )
    return Context.add(runner, PushScheduler, yield* Effect.provide(make, runner))
  })
)
