/**
 * Sessions as sharded entities: one `AgentHostSession` entity per isolation key. Any runner accepts a request; its
 * `Turns` prepares it (run hook, checks, authorization) and the `TurnRouter` here sends the prepared turn to the
 * runner owning the key's shard, whose entity runs it in that runner's session actor (`Turns.local`): one at a time
 * per key, in arrival order, with the channel's busy policy. Streams are forwarded as a streaming entity RPC.
 *
 * Turn messages are volatile (not persisted): a turn is acknowledged only by its reply, which the caller waits for.
 * When the owner dies the cluster resends a pending message to the shard's next owner. A turn that had not begun
 * runs there; one that had begun (its id was admitted, its input appended) is refused with `TurnCancelled`
 * (`reason: "shutdown"`, 503), so no turn's effects (agent call, pushes) happen twice.
 */
import * as ClusterError from "@effect/cluster/ClusterError"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Layer, Mailbox, Option, Schema, Stream } from "effect"
import type { TurnOutcome, TurnStream } from "../core/Channel.js"
import type { IsolationKeys } from "../core/RequestContext.js"
import { TurnRouter, Turns } from "../core/Turns.js"
import type { ChannelRequest } from "../domain/ChannelRequest.js"
import type { TurnError } from "../domain/Errors.js"
import { AgentError, MailboxFull, TurnCancelled } from "../domain/Errors.js"
import { issueId } from "../domain/Ids.js"
import type { AgentResponseUpdate } from "../domain/Message.js"
import { StateStore } from "../state/StateStore.js"
import * as Wire from "./Wire.js"

export const SessionEntity = Entity.make("AgentHostSession", [
  Rpc.make("Run", { payload: Wire.TurnPayload, success: Wire.Outcome, error: Wire.TurnErrorWire }),
  Rpc.make("RunStream", {
    payload: Wire.TurnPayload,
    success: Wire.StreamEvent,
    error: Wire.TurnErrorWire,
    stream: true
  }),
  Rpc.make("Reset", { payload: { channel: Schema.String }, success: Schema.String })
])

/** The namespace of `StateStore.markSeen` that admits each forwarded turn once. */
export const turnSeenNamespace = "cluster-turn"

const interruptedElsewhere = (key: string) =>
  new TurnCancelled({
    key,
    reason: "shutdown",
    message: "the host running this turn stopped before it finished; what you sent is kept in the conversation, " +
      "send it again to get the answer"
  })

/**
 * The entity's behaviour on the owning runner. Built per key when the key's first message arrives here (after a
 * start, a shard move or an idle release): the key's cached alias and history are dropped then, since another
 * runner may have run its turns meanwhile.
 */
export const layerEntity = SessionEntity.toLayer(
  Effect.gen(function*() {
    const turns = yield* Turns
    const store = yield* StateStore
    const key = (yield* Entity.CurrentAddress).entityId
    yield* turns.local.forget(key)
    const admit = (turnId: string) =>
      Effect.flatMap(
        // Seen-id window: a forwarded turn is redelivered within hours at most.
        store.markSeen(turnSeenNamespace, turnId, Duration.hours(24)),
        (first) => first ? Effect.void : Effect.fail(interruptedElsewhere(key))
      )
    return SessionEntity.of({
      Run: ({ payload }) =>
        Effect.map(
          turns.local.run(payload.channel, payload.request, Wire.isolationOf(payload), admit(payload.turnId)),
          Wire.outcomeToWire
        ),
      RunStream: ({ payload }) =>
        Stream.unwrap(Effect.map(
          turns.local.runStream(payload.channel, payload.request, Wire.isolationOf(payload), admit(payload.turnId)),
          (turn): Stream.Stream<Wire.StreamEvent, TurnError> =>
            Stream.make<Array<Wire.StreamEvent>>({ _tag: "Started" }).pipe(
              Stream.concat(Stream.map(turn.updates, (update): Wire.StreamEvent => ({ _tag: "Update", update }))),
              Stream.concat(
                Stream.fromEffect(Effect.map(turn.result, (outcome): Wire.StreamEvent => ({
                  _tag: "Outcome",
                  outcome: Wire.outcomeToWire(outcome)
                })))
              )
            )
        )),
      Reset: ({ payload }) => turns.local.resetSession(payload.channel, key)
    })
  }),
  // The session actor orders a key's turns and applies the busy policy; the entity only hands them over, in order.
  { concurrency: "unbounded" }
)

/** What the cluster itself may fail a forwarded turn with, as the turn errors channels already render. */
const fromCluster = (key: string) => (error: unknown): TurnError => {
  if (error instanceof ClusterError.MailboxFull) {
    return new MailboxFull({
      key,
      limit: 0,
      retryAfter: Duration.seconds(1),
      message: `session ${key} has too many messages waiting on its host; send again in a moment`
    })
  }
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "unknown"
  return new TurnCancelled({
    key,
    reason: "shutdown",
    message: `the cluster could not hand this turn to the host that runs its session (${tag}); send it again`
  })
}

const isTurnError = (error: unknown): error is TurnError =>
  typeof error === "object" && error !== null && "_tag" in error &&
    [
      "InvalidRequest",
      "InvalidIsolationKey",
      "SessionBusy",
      "SessionCapacityExceeded",
      "PushQueueFull",
      "TurnCancelled",
      "AgentError",
      "AccessDenied",
      "LinkRequiredError"
    ].includes(String(error._tag)) || error instanceof MailboxFull

const forwardDefect = (defect: unknown) =>
  new AgentError({
    message: "the turn could not be forwarded to its session's host",
    code: "cluster_forward_failed",
    cause: defect
  })

const mapFailure = (key: string) => (error: unknown): TurnError => isTurnError(error) ? error : fromCluster(key)(error)

/** The router every runner's `Turns` hands keyed turns to. */
export const makeRouter = Effect.gen(function*() {
  const clientFor = yield* SessionEntity.client
  const scope = yield* Effect.scope

  const payloadOf = (turnId: string, channel: string, request: ChannelRequest, isolation: IsolationKeys) => ({
    turnId,
    channel,
    request,
    ...Wire.isolationFields(isolation)
  })

  // Under `onDisconnect: "cancel"` the wait may be interrupted (which interrupts the forwarded turn); route
  // handlers run uninterruptibly otherwise, as for a local turn.
  const waitable = <A>(request: ChannelRequest, effect: Effect.Effect<A, TurnError>) =>
    request.onDisconnect === "cancel" ? Effect.interruptible(effect) : effect

  const run = (channel: string, request: ChannelRequest, isolation: IsolationKeys): Effect.Effect<
    TurnOutcome,
    TurnError
  > => {
    const key = request.session!.isolationKey
    return Effect.flatMap(issueId("turn_"), (turnId) =>
      waitable(
        request,
        clientFor(key).Run(payloadOf(turnId, channel, request, isolation)).pipe(
          Effect.mapError(mapFailure(key)),
          Effect.catchAllDefect((defect) => Effect.fail(forwardDefect(defect))),
          Effect.map(Wire.outcomeFromWire)
        )
      ))
  }

  // The forwarded stream is read in a fiber of its own, into a mailbox for `updates` and a deferred for the outcome:
  // the turn belongs to the session, so abandoning `updates` does not stop it (unless `onDisconnect` is `cancel`).
  const runStream = (channel: string, request: ChannelRequest, isolation: IsolationKeys): Effect.Effect<
    TurnStream,
    TurnError
  > =>
    Effect.gen(function*() {
      const key = request.session!.isolationKey
      const turnId = yield* issueId("turn_")
      const mailbox = yield* Mailbox.make<AgentResponseUpdate, TurnError>()
      const started = yield* Deferred.make<void, TurnError>()
      const outcome = yield* Deferred.make<TurnOutcome, TurnError>()
      const events = clientFor(key).RunStream(payloadOf(turnId, channel, request, isolation)).pipe(
        Stream.mapError(mapFailure(key)),
        Stream.catchAllCause((cause) => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure)) return Stream.fail(failure.value)
          if (Cause.isInterruptedOnly(cause)) return Stream.failCause(cause)
          return Stream.fail(forwardDefect(Cause.squash(cause)))
        })
      )
      const reader = Stream.runForEach(events, (event) => {
        switch (event._tag) {
          case "Started":
            return Deferred.succeed(started, undefined)
          case "Update":
            return mailbox.offer(event.update)
          case "Outcome":
            return Deferred.succeed(outcome, Wire.outcomeFromWire(event.outcome))
        }
      }).pipe(
        // Completing an already completed deferred does nothing: only what is still open learns how it ended.
        Effect.onExit((exit) => {
          if (Exit.isSuccess(exit)) {
            const missing = new AgentError({
              message: "the forwarded turn ended without an outcome",
              code: "cluster_forward_failed"
            })
            return Effect.all([Deferred.fail(started, missing), Deferred.fail(outcome, missing), mailbox.end], {
              discard: true
            })
          }
          const failure = Cause.failureOption(exit.cause)
          const error = Option.isSome(failure) ?
            failure.value :
            new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })
          return Effect.all([Deferred.fail(started, error), Deferred.fail(outcome, error), mailbox.fail(error)], {
            discard: true
          })
        })
      )
      const fiber = yield* Effect.forkIn(reader, scope)
      yield* Deferred.await(started)
      const cancel = request.onDisconnect === "cancel"
      const updates = Mailbox.toStream(mailbox).pipe(
        Stream.ensuring(cancel ? Effect.zipRight(mailbox.shutdown, Fiber.interruptFork(fiber)) : mailbox.shutdown)
      )
      return { updates, result: Deferred.await(outcome) }
    })

  return TurnRouter.of({
    run,
    runStream,
    resetSession: (channel, key) => clientFor(key).Reset({ channel }).pipe(Effect.orDie)
  })
})

export const layerRouter = Layer.scoped(TurnRouter, makeRouter)
