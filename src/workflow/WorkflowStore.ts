/**
 * What the workflow target remembers beside the engine: the outputs each execution emitted (in order), the
 * input an execution is waiting for, and per session the current execution and how many of its outputs have
 * reached a channel. The engine owns execution state; this store owns what the channels see.
 *
 * `layerMemory` keeps it in process (pair it with `WorkflowEngine.layerMemory`); `layerSql` keeps it in the
 * host's SQL database (pair it with the cluster engine on the same database).
 */
import { SqlClient } from "@effect/sql"
import type { Queue, Scope } from "effect"
import { Context, Effect, Layer, Option, PubSub, Schema } from "effect"
import { AgentResponseUpdate } from "../domain/Message.js"

export interface WorkflowSession {
  readonly sessionId: string
  readonly executionId: string
  /** How many executions this session has started (the execution key's counter). */
  readonly executions: number
  /** Outputs of `executionId` with `seq < delivered` have reached a channel. */
  readonly delivered: number
}

export interface StoredOutput {
  readonly seq: number
  readonly update: AgentResponseUpdate
}

export interface WorkflowStoreShape {
  /** Records output `seq` of an execution; a second write of the same `seq` is ignored (replayed activity). */
  readonly appendOutput: (executionId: string, seq: number, update: AgentResponseUpdate) => Effect.Effect<void>
  /** Outputs with `seq >= from`, in order. */
  readonly outputsFrom: (executionId: string, from: number) => Effect.Effect<ReadonlyArray<StoredOutput>>
  /** Marks the execution as waiting for the user's next message, delivered to the named deferred. */
  readonly setWaiting: (executionId: string, inputName: string) => Effect.Effect<void>
  /** Clears the mark if it is still for `inputName` (a resumed execution may already wait for the next one). */
  readonly clearWaiting: (executionId: string, inputName: string) => Effect.Effect<void>
  readonly waiting: (executionId: string) => Effect.Effect<Option.Option<string>>
  readonly getSession: (sessionId: string) => Effect.Effect<Option.Option<WorkflowSession>>
  readonly putSession: (session: WorkflowSession) => Effect.Effect<void>
  /** Sessions whose current execution has outputs with `seq >= delivered` (candidates for a push). */
  readonly undelivered: Effect.Effect<ReadonlyArray<WorkflowSession>>
  /** Signals that an execution wrote something, so a waiting turn looks again at once. */
  readonly changes: Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
  readonly notify: (executionId: string) => Effect.Effect<void>
}

export class WorkflowStore extends Context.Tag("effect-agent-host/WorkflowStore")<
  WorkflowStore,
  WorkflowStoreShape
>() {}

const makeSignals = Effect.map(PubSub.sliding<string>(1024), (hub) => ({
  changes: PubSub.subscribe(hub),
  notify: (executionId: string) => Effect.asVoid(PubSub.publish(hub, executionId))
}))

export const makeMemory = Effect.gen(function*() {
  const signals = yield* makeSignals
  const outputs = new Map<string, Map<number, AgentResponseUpdate>>()
  const waiting = new Map<string, string>()
  const sessions = new Map<string, WorkflowSession>()
  return WorkflowStore.of({
    appendOutput: (executionId, seq, update) =>
      Effect.sync(() => {
        let byExecution = outputs.get(executionId)
        if (byExecution === undefined) outputs.set(executionId, byExecution = new Map())
        if (!byExecution.has(seq)) byExecution.set(seq, update)
      }),
    outputsFrom: (executionId, from) =>
      Effect.sync(() =>
        [...(outputs.get(executionId) ?? new Map<number, AgentResponseUpdate>()).entries()]
          .filter(([seq]) => seq >= from)
          .sort(([a], [b]) => a - b)
          .map(([seq, update]) => ({ seq, update }))
      ),
    setWaiting: (executionId, inputName) => Effect.sync(() => void waiting.set(executionId, inputName)),
    clearWaiting: (executionId, inputName) =>
      Effect.sync(() => {
        if (waiting.get(executionId) === inputName) waiting.delete(executionId)
      }),
    waiting: (executionId) => Effect.sync(() => Option.fromNullable(waiting.get(executionId))),
    getSession: (sessionId) => Effect.sync(() => Option.fromNullable(sessions.get(sessionId))),
    putSession: (session) => Effect.sync(() => void sessions.set(session.sessionId, session)),
    undelivered: Effect.sync(() =>
      [...sessions.values()].filter((session) =>
        [...(outputs.get(session.executionId)?.keys() ?? [])].some((seq) => seq >= session.delivered)
      )
    ),
    ...signals
  })
})

export const layerMemory: Layer.Layer<WorkflowStore> = Layer.effect(WorkflowStore, makeMemory)

const UpdateJson = Schema.parseJson(AgentResponseUpdate)
const encodeUpdate = Schema.encodeSync(UpdateJson)
const decodeUpdate = Schema.decodeUnknownSync(UpdateJson)

export const makeSql = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const signals = yield* makeSignals
  yield* sql`CREATE TABLE IF NOT EXISTS agent_host_workflow_outputs (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    update_json TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
  )`
  yield* sql`CREATE TABLE IF NOT EXISTS agent_host_workflow_waiting (
    execution_id TEXT PRIMARY KEY,
    input_name TEXT NOT NULL
  )`
  yield* sql`CREATE TABLE IF NOT EXISTS agent_host_workflow_sessions (
    session_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    executions INTEGER NOT NULL,
    delivered INTEGER NOT NULL
  )`
  return WorkflowStore.of({
    appendOutput: (executionId, seq, update) =>
      sql`INSERT INTO agent_host_workflow_outputs (execution_id, seq, update_json)
          VALUES (${executionId}, ${seq}, ${encodeUpdate(update)})
          ON CONFLICT (execution_id, seq) DO NOTHING`.pipe(Effect.asVoid, Effect.orDie),
    outputsFrom: (executionId, from) =>
      sql<{ seq: number; update_json: string }>`SELECT seq, update_json FROM agent_host_workflow_outputs
          WHERE execution_id = ${executionId} AND seq >= ${from} ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map((row) => ({ seq: Number(row.seq), update: decodeUpdate(row.update_json) }))),
        Effect.orDie
      ),
    setWaiting: (executionId, inputName) =>
      sql`INSERT INTO agent_host_workflow_waiting (execution_id, input_name) VALUES (${executionId}, ${inputName})
          ON CONFLICT (execution_id) DO UPDATE SET input_name = excluded.input_name`.pipe(Effect.asVoid, Effect.orDie),
    clearWaiting: (executionId, inputName) =>
      sql`DELETE FROM agent_host_workflow_waiting
          WHERE execution_id = ${executionId} AND input_name = ${inputName}`.pipe(
        Effect.asVoid,
        Effect.orDie
      ),
    waiting: (executionId) =>
      sql<{ input_name: string }>`SELECT input_name FROM agent_host_workflow_waiting
          WHERE execution_id = ${executionId}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.input_name)),
        Effect.orDie
      ),
    getSession: (sessionId) =>
      sql<{ execution_id: string; executions: number; delivered: number }>`SELECT execution_id, executions, delivered
          FROM agent_host_workflow_sessions WHERE session_id = ${sessionId}`.pipe(
        Effect.map((rows) =>
          Option.map(Option.fromNullable(rows[0]), (row) => ({
            sessionId,
            executionId: row.execution_id,
            executions: Number(row.executions),
            delivered: Number(row.delivered)
          }))
        ),
        Effect.orDie
      ),
    putSession: (s) =>
      sql`INSERT INTO agent_host_workflow_sessions (session_id, execution_id, executions, delivered)
          VALUES (${s.sessionId}, ${s.executionId}, ${s.executions}, ${s.delivered})
          ON CONFLICT (session_id) DO UPDATE SET execution_id = excluded.execution_id,
            executions = excluded.executions, delivered = excluded.delivered`.pipe(Effect.asVoid, Effect.orDie),
    undelivered: sql<{ session_id: string; execution_id: string; executions: number; delivered: number }>`
        SELECT s.session_id, s.execution_id, s.executions, s.delivered FROM agent_host_workflow_sessions s
        WHERE EXISTS (SELECT 1 FROM agent_host_workflow_outputs o
          WHERE o.execution_id = s.execution_id AND o.seq >= s.delivered)`.pipe(
      Effect.map((rows) =>
        rows.map((row) => ({
          sessionId: row.session_id,
          executionId: row.execution_id,
          executions: Number(row.executions),
          delivered: Number(row.delivered)
        }))
      ),
      Effect.orDie
    ),
    ...signals
  })
})

/** The store in the SQL database of the context (the host's state database). */
export const layerSql: Layer.Layer<WorkflowStore, never, SqlClient.SqlClient> = Layer.effect(
  WorkflowStore,
  Effect.orDie(makeSql)
)
