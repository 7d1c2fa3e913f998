/**
 * Workflow targets: a durable `@effect/workflow` workflow hosted behind the channels like an agent.
 *
 * Each session has at most one current execution. A message starts a new execution (one per session and
 * turn, keyed `<session>/<n>`), or, when the current one waits in `WorkflowOutput.awaitInput`, resumes it
 * with the message. The turn streams the execution's outputs (`WorkflowOutput.text` / `value`) until the
 * execution waits for input again or completes; the workflow's own result is `TargetResult.result`.
 *
 * Engines: `layerEngineMemory` (in process, for tests) and `layerEngineSql` (`@effect/cluster` SingleRunner
 * with SQL message and runner storage on the SqlClient of the context, so executions survive restarts).
 * See docs/WORKFLOWS.md.
 */
import { ClusterWorkflowEngine, RunnerAddress, SingleRunner } from "@effect/cluster"
import type { MessageStorage, Sharding, ShardingConfig } from "@effect/cluster"
import type { SqlClient } from "@effect/sql"
import type { Workflow } from "@effect/workflow"
import { Workflow as WorkflowModule, WorkflowEngine } from "@effect/workflow"
import type { ConfigError, Scope } from "effect"
import { Cause, Duration, Effect, Exit, Layer, Mailbox, Option, Schema, Stream } from "effect"
import type { TargetShape, Turn } from "../core/Target.js"
import { Target } from "../core/Target.js"
import { AgentError } from "../domain/Errors.js"
import { issueId } from "../domain/Ids.js"
import type { AgentResponse, AgentResponseUpdate } from "../domain/Message.js"
import { lastUserText, Message, ResponseAccumulator } from "../domain/Message.js"
import * as WorkflowOutput from "./WorkflowOutput.js"
import type { WorkflowSession } from "./WorkflowStore.js"
import * as WorkflowStoreModule from "./WorkflowStore.js"
import { WorkflowStore } from "./WorkflowStore.js"

/** The payload every hosted workflow receives: the message that started the execution. */
export const TurnPayload = Schema.Struct({
  /** `<session>/<n>`: the execution's idempotency key. */
  executionKey: Schema.String,
  sessionId: Schema.String,
  /** The text of the last user message. */
  text: Schema.String,
  messages: Schema.Array(Message)
})
export type TurnPayload = typeof TurnPayload.Type

/** A workflow the host can run: its payload is `TurnPayload`. */
export type HostedWorkflow<
  Name extends string,
  Success extends Schema.Schema.AnyNoContext,
  Error extends Schema.Schema.All & { readonly Context: never }
> = Workflow.Workflow<Name, typeof TurnPayload, Success, Error>

/** `Workflow.make` with the host's payload and idempotency key. */
export const makeWorkflow = <
  const Name extends string,
  Success extends Schema.Schema.AnyNoContext = typeof Schema.Void,
  Error extends Schema.Schema.All & { readonly Context: never } = typeof Schema.Never
>(options: {
  readonly name: Name
  readonly success?: Success
  readonly error?: Error
}): HostedWorkflow<Name, Success, Error> =>
  WorkflowModule.make({
    name: options.name,
    payload: TurnPayload,
    idempotencyKey: (payload: TurnPayload) => payload.executionKey,
    ...(options.success === undefined ? {} : { success: options.success }),
    ...(options.error === undefined ? {} : { error: options.error })
  }) as HostedWorkflow<Name, Success, Error>

/** The result of a turn that ended because the execution waits for the user's next message. */
export class AwaitingInput extends Schema.TaggedClass<AwaitingInput>()("AwaitingInput", {
  executionId: Schema.String,
  input: Schema.String
}) {}

export interface Options {
  /** How often a turn re-reads the execution when no change was signalled (default 250 ms). */
  readonly pollInterval?: Duration.DurationInput
  /**
   * How long one turn follows a running execution (default 10 minutes). Past it the turn ends with an
   * AgentError; the execution goes on and its outputs come with the session's next message.
   */
  readonly turnTimeout?: Duration.DurationInput
}

/** An ending no turn is following: the undelivered outputs of a session's execution, folded. */
export interface Ending {
  readonly sessionId: string
  readonly executionId: string
  /** The outputs `[from, to)` the ending carries. */
  readonly from: number
  readonly to: number
  readonly response: AgentResponse
  /** The workflow's result, or `AwaitingInput` when it waits for the next message. */
  readonly result: unknown
}

/** A workflow target: a `TargetShape` that can also hand over endings no turn is following. */
export interface WorkflowTargetShape extends TargetShape {
  /**
   * For every session whose execution waits or has completed with outputs no turn delivered (and that no
   * turn follows now), calls `deliver`; when it answers true, the outputs count as delivered, so the
   * session's next message does not repeat them.
   */
  readonly recoverEndings: (deliver: (ending: Ending) => Effect.Effect<boolean>) => Effect.Effect<void>
}

export const isWorkflowTarget = (target: TargetShape): target is WorkflowTargetShape =>
  target.kind === "workflow" && "recoverEndings" in target

type Outcome =
  | { readonly _tag: "Waiting"; readonly input: string }
  | { readonly _tag: "Complete"; readonly exit: Exit.Exit<unknown, unknown> }

const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.squash(cause)
  if (typeof failure === "object" && failure !== null && "message" in failure && typeof failure.message === "string") {
    return failure.message
  }
  if (typeof failure === "string") return failure
  try {
    return JSON.stringify(failure)
  } catch {
    return String(failure)
  }
}

/**
 * Hosts `workflow` as the host's target, registering `execute` with the engine. `execute` reaches the
 * channel through `WorkflowOutput`.
 */
export const make = Effect.fnUntraced(function*<
  Name extends string,
  Success extends Schema.Schema.AnyNoContext,
  Error extends Schema.Schema.All & { readonly Context: never },
  R
>(
  workflow: HostedWorkflow<Name, Success, Error>,
  execute: (payload: TurnPayload, executionId: string) => Effect.Effect<Success["Type"], Error["Type"], R>,
  options: Options = {}
) {
  const engine = yield* WorkflowEngine.WorkflowEngine
  const store = yield* WorkflowStore
  const pollInterval = Duration.decode(options.pollInterval ?? "250 millis")
  const turnTimeout = Duration.decode(options.turnTimeout ?? "10 minutes")
  // Sessions a turn follows now (a count: one turn per session at a time, but be safe). The lock makes
  // "no turn follows" and "recovery delivers" one step, so a turn and recovery never deliver the same output.
  const following = new Map<string, number>()
  const followLock = yield* Effect.makeSemaphore(1)
  const markFollowing = (sessionId: string) =>
    Effect.acquireRelease(
      followLock.withPermits(1)(Effect.sync(() => void following.set(sessionId, (following.get(sessionId) ?? 0) + 1))),
      () =>
        Effect.sync(() => {
          const left = (following.get(sessionId) ?? 1) - 1
          if (left <= 0) following.delete(sessionId)
          else following.set(sessionId, left)
        })
    )

  yield* engine.register(workflow, (payload, executionId) =>
    execute(payload, executionId).pipe(
      Effect.provideService(WorkflowOutput.WorkflowOutput, WorkflowOutput.make(executionId, store)),
      // Every run ends in a suspension or a result: wake the turn following it.
      Effect.ensuring(store.notify(executionId))
    ))

  // Follows an execution from its `delivered` output until it waits for input or completes.
  const follow = (
    session: WorkflowSession,
    onUpdate: (update: AgentResponseUpdate) => Effect.Effect<void>
  ): Effect.Effect<
    { readonly outcome: Outcome; readonly session: WorkflowSession; readonly emitted: number },
    never,
    Scope.Scope
  > =>
    Effect.gen(function*() {
      const changes = yield* store.changes
      let current = session
      let emitted = 0
      const drain = Effect.gen(function*() {
        const outputs = yield* store.outputsFrom(current.executionId, current.delivered)
        if (outputs.length === 0) return
        for (const output of outputs) yield* onUpdate(output.update)
        emitted += outputs.length
        current = { ...current, delivered: outputs[outputs.length - 1]!.seq + 1 }
        yield* store.putSession(current)
      })
      while (true) {
        // State first, then outputs: anything written before the state was observed is then delivered.
        const waiting = yield* store.waiting(current.executionId)
        const result = Option.isSome(waiting) ? undefined : yield* workflow.poll(current.executionId).pipe(
          Effect.provideService(WorkflowEngine.WorkflowEngine, engine)
        )
        yield* drain
        if (Option.isSome(waiting)) {
          return { outcome: { _tag: "Waiting", input: waiting.value } as const, session: current, emitted }
        }
        if (result !== undefined && result._tag === "Complete") {
          return { outcome: { _tag: "Complete", exit: result.exit } as const, session: current, emitted }
        }
        yield* changes.take.pipe(Effect.timeout(pollInterval), Effect.ignore)
        yield* changes.takeAll
      }
    })

  const start = Effect.fnUntraced(function*(sessionId: string, turn: Turn, executions: number) {
    const payload: TurnPayload = {
      executionKey: `${sessionId}/${executions}`,
      sessionId,
      text: lastUserText(turn.input),
      messages: turn.input
    }
    const executionId = yield* workflow.executionId(payload)
    const session: WorkflowSession = { sessionId, executionId, executions, delivered: 0 }
    yield* store.putSession(session)
    yield* workflow.execute(payload, { discard: true }).pipe(
      Effect.provideService(WorkflowEngine.WorkflowEngine, engine)
    )
    return session
  })

  const resumeWith = Effect.fnUntraced(function*(session: WorkflowSession, input: string, turn: Turn) {
    // Deferred first: a crash in between leaves the mark, and a second `done` for one name is ignored, so the
    // session never sticks on an execution that waits with no mark.
    yield* engine.deferredDone(WorkflowOutput.UserInputDeferred(input), {
      workflowName: workflow.name,
      executionId: session.executionId,
      deferredName: input,
      exit: Exit.succeed({ text: lastUserText(turn.input), messages: turn.input })
    })
    yield* store.clearWaiting(session.executionId, input)
  })

  /** Runs one turn, calling `onUpdate` for each output; returns the workflow's result for this turn. */
  const drive = (turn: Turn, onUpdate: (update: AgentResponseUpdate) => Effect.Effect<void>) =>
    Effect.gen(function*() {
      const sessionId = turn.sessionId ?? (yield* issueId("anonymous-"))
      yield* markFollowing(sessionId)
      const existing = yield* store.getSession(sessionId)
      let followed: { readonly outcome: Outcome; readonly session: WorkflowSession; readonly emitted: number }
      if (Option.isSome(existing)) {
        // Deliver what a previous turn could not (a restart, a timeout), then feed the message if awaited.
        const recovered = yield* follow(existing.value, onUpdate)
        if (recovered.outcome._tag === "Waiting") {
          yield* resumeWith(recovered.session, recovered.outcome.input, turn)
          followed = yield* follow(recovered.session, onUpdate)
        } else if (recovered.emitted > 0) {
          // The execution finished while nobody was listening: this turn delivers its ending.
          followed = recovered
        } else {
          followed = yield* follow(yield* start(sessionId, turn, existing.value.executions + 1), onUpdate)
        }
      } else {
        followed = yield* follow(yield* start(sessionId, turn, 1), onUpdate)
      }
      const outcome = followed.outcome
      if (outcome._tag === "Waiting") {
        return new AwaitingInput({ executionId: followed.session.executionId, input: outcome.input })
      }
      if (Exit.isFailure(outcome.exit)) {
        return yield* new AgentError({
          message: `the workflow failed: ${describeFailure(outcome.exit.cause)}`,
          code: "workflow_failed"
        })
      }
      const value = outcome.exit.value
      if (value !== undefined) yield* onUpdate({ contents: [], value, finishReason: "stop" })
      return value
    }).pipe(
      Effect.scoped,
      Effect.timeoutFail({
        duration: turnTimeout,
        onTimeout: () =>
          new AgentError({
            message: "the workflow is still running; its outputs will come with your next message",
            code: "workflow_timeout"
          })
      })
    )

  const recoverOne = Effect.fnUntraced(function*(
    candidate: WorkflowSession,
    deliver: (ending: Ending) => Effect.Effect<boolean>
  ) {
    if (following.has(candidate.sessionId)) return
    // Re-read under the lock: a turn may have delivered or started another execution since the listing.
    const current = yield* store.getSession(candidate.sessionId)
    if (Option.isNone(current)) return
    const session = current.value
    // Waiting state first, then the result, then outputs (as `follow` does): nothing written before is missed.
    const waiting = yield* store.waiting(session.executionId)
    const result = Option.isSome(waiting) ? undefined : yield* workflow.poll(session.executionId).pipe(
      Effect.provideService(WorkflowEngine.WorkflowEngine, engine)
    )
    // A running execution is left alone: its turn (or a later recovery) takes the whole ending.
    if (Option.isNone(waiting) && (result === undefined || result._tag !== "Complete")) return
    const outputs = yield* store.outputsFrom(session.executionId, session.delivered)
    if (outputs.length === 0) return
    const acc = new ResponseAccumulator()
    for (const output of outputs) acc.add(output.update)
    let value: unknown
    if (Option.isSome(waiting)) {
      value = new AwaitingInput({ executionId: session.executionId, input: waiting.value })
    } else if (result !== undefined && result._tag === "Complete") {
      if (Exit.isFailure(result.exit)) {
        acc.add({ contents: [{ _tag: "text", text: `the workflow failed: ${describeFailure(result.exit.cause)}` }] })
      } else {
        value = result.exit.value
        if (value !== undefined) acc.add({ contents: [], value, finishReason: "stop" })
      }
    }
    const to = outputs[outputs.length - 1]!.seq + 1
    const delivered = yield* deliver({
      sessionId: session.sessionId,
      executionId: session.executionId,
      from: session.delivered,
      to,
      response: acc.done(),
      result: value
    })
    if (delivered) yield* store.putSession({ ...session, delivered: to })
  })

  const recoverEndings = Effect.fnUntraced(function*(deliver: (ending: Ending) => Effect.Effect<boolean>) {
    const candidates = yield* store.undelivered
    for (const candidate of candidates) {
      if (following.has(candidate.sessionId)) continue
      yield* followLock.withPermits(1)(recoverOne(candidate, deliver))
    }
  })

  const target: WorkflowTargetShape = {
    kind: "workflow",
    name: workflow.name,
    recoverEndings,
    run: (turn) =>
      Effect.gen(function*() {
        const acc = new ResponseAccumulator()
        const result = yield* drive(turn, (update) => Effect.sync(() => acc.add(update)))
        return { response: acc.done(), result }
      }),
    stream: (turn) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<AgentResponseUpdate, AgentError>()
        yield* drive(turn, (update) => Effect.asVoid(mailbox.offer(update))).pipe(
          Effect.onExit((exit) => Exit.isSuccess(exit) ? mailbox.end : mailbox.failCause(exit.cause)),
          Effect.forkScoped
        )
        return Mailbox.toStream(mailbox)
      }))
  }
  return target
})

/** Hosts `workflow` as the host's target. Provide an engine layer (`layerEngineMemory` / `layerEngineSql`). */
export const layer = <
  Name extends string,
  Success extends Schema.Schema.AnyNoContext,
  Error extends Schema.Schema.All & { readonly Context: never },
  R
>(
  workflow: HostedWorkflow<Name, Success, Error>,
  execute: (payload: TurnPayload, executionId: string) => Effect.Effect<Success["Type"], Error["Type"], R>,
  options: Options = {}
): Layer.Layer<
  Target,
  never,
  | WorkflowEngine.WorkflowEngine
  | WorkflowStore
  | Exclude<
    R,
    | WorkflowEngine.WorkflowEngine
    | WorkflowEngine.WorkflowInstance
    | WorkflowOutput.WorkflowOutput
    | Workflow.Execution<Name>
    | Scope.Scope
  >
  | Success["Context"]
  | Error["Context"]
> => Layer.scoped(Target, make(workflow, execute, options)) as never

/** What an engine layer provides: the engine and the workflow store. */
export type EngineAndStore = WorkflowEngine.WorkflowEngine | WorkflowStore

/** The in-memory engine and store: nothing survives the process. For tests. */
export const layerEngineMemory: Layer.Layer<WorkflowEngine.WorkflowEngine | WorkflowStore> = Layer.merge(
  WorkflowEngine.layerMemory,
  WorkflowStoreModule.layerMemory
)

/**
 * The durable engine: `@effect/cluster`'s SingleRunner (one runner, no network) with SQL message and runner
 * storage, and the workflow store, all on the SqlClient of the context (the host's state database).
 */
export const layerEngineSql = (
  options: { readonly shardingConfig?: Partial<ShardingConfig.ShardingConfig["Type"]> } = {}
): Layer.Layer<WorkflowEngine.WorkflowEngine | WorkflowStore, ConfigError.ConfigError, SqlClient.SqlClient> =>
  Layer.merge(
    ClusterWorkflowEngine.layer.pipe(
      Layer.provide(SingleRunner.layer({
        runnerStorage: "sql",
        // One local database: polling it every second costs little and picks up resumed executions sooner.
        shardingConfig: {
          entityMessagePollInterval: Duration.seconds(1),
          // The cluster reads its address from HOST/PORT, the host's own HTTP settings. A restart on another
          // port would then wait for the old address's shard locks to expire (35 s): keep one fixed address.
          runnerAddress: Option.some(RunnerAddress.make("localhost", 34431)),
          ...options.shardingConfig
        }
      }))
    ),
    WorkflowStoreModule.layerSql
  )

/**
 * The durable engine of a cluster (`AGENT_HOST_CLUSTER=postgres`, src/cluster): `ClusterWorkflowEngine` on the
 * runners' own `Sharding` and `MessageStorage` (Postgres), and the workflow store on the SqlClient of the context (the
 * shared state database). Each execution is an entity sharded over the runners: exactly one runner runs it (the owner
 * of its shard), and when that runner stops or dies, the runner taking the shard replays it from the journal
 * (finished activities are read back, not run again). Compose it into the core `Cluster.layerCore` builds, so it
 * shares that runner's sharding.
 */
export const layerEngineCluster: Layer.Layer<
  WorkflowEngine.WorkflowEngine | WorkflowStore,
  never,
  Sharding.Sharding | MessageStorage.MessageStorage | SqlClient.SqlClient
> = Layer.merge(ClusterWorkflowEngine.layer, WorkflowStoreModule.layerSql)
