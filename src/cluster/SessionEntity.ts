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
import * as EntityId from "@effect/cluster/EntityId"
import * as Sharding from "@effect/cluster/Sharding"
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
import { BoundedCache } from "../internal/BoundedCache.js"
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

const seenWindow = Duration.hours(24)

const interruptedElsewhere = (key: string) =>
  new TurnCancelled({
    key,
    reason: "shutdown",
    message: "the host running this turn stopped before it finished; what you sent is kept in the conversation, " +
      "send it again to get the answer"
  })

/**
 * How a turn is admitted once. A forwarded turn (received by another runner) is admitted through
 * `StateStore.markSeen` before it begins: if this runner dies mid-turn, the sender resends it to the key's next owner,
 * which finds it seen and refuses it. A turn this runner received while it owned the key's shard cannot be resent by
 * a dead runner (its sender dies with it), so it costs no write on the way: only when its handler ends without a
 * reply (the shard moves, shutdown, a defect), after which the cluster may resend it here or to the next owner, is
 * it marked seen, in the store if it had begun (before the shard is released: entity termination waits for the
 * handler's finalizers) and in memory either way, so a resend to this runner, or the abandoned copy still queued in
 * the session actor, does not run it again. A turn sent to a shard another runner owned carries a `from` that is no
 * runner's (`awayFrom`): if that owner dies after beginning it and the shard moves to the sender, the resend that
 * arrives here is admitted through the store like any forwarded turn, and refused.
 */
const admission = (
  self: string,
  store: StateStore["Type"],
  endedHere: BoundedCache<string, true>,
  key: string,
  payload: { readonly turnId: string; readonly from: string }
) => {
  const turnId = payload.turnId
  if (payload.from !== self) {
    return {
      guard: Effect.flatMap(
        // Seen-id window: a forwarded turn is redelivered within hours at most.
        store.markSeen(turnSeenNamespace, turnId, seenWindow),
        (first) => first ? Effect.void : Effect.fail(interruptedElsewhere(key))
      ),
      settle: <A, E>(_: Exit.Exit<A, E>): Effect.Effect<void> => Effect.void
    }
  }
  let begun = false
  let ended = false
  return {
    guard: Effect.suspend(() => {
      if (ended || endedHere.get(turnId) !== undefined) return Effect.fail(interruptedElsewhere(key))
      begun = true
      return Effect.void
    }),
    // A typed failure is a reply too; only an interruption or a defect leaves the sender without one.
    settle: <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<void> => {
      if (Exit.isSuccess(exit) || Cause.isFailType(exit.cause)) return Effect.void
      ended = true
      endedHere.set(turnId, true)
      return begun ? Effect.asVoid(store.markSeen(turnSeenNamespace, turnId, seenWindow)) : Effect.void
    }
  }
}

/**
 * The entity's behaviour on the owning runner (`self`: its runner address, as the router here sends it). Built per
 * key when the key's first message arrives here (after a start, a shard move or an idle release): the key's cached
 * alias and history are dropped then, since another runner may have run its turns meanwhile.
 */
export const layerEntity = (self: string) =>
  Layer.unwrapEffect(Effect.sync(() => {
    // Turns of this runner whose handler ended without a reply: few (shard moves, shutdown, defects).
    const endedHere = new BoundedCache<string, true>(10_000)
    return SessionEntity.toLayer(
      Effect.gen(function*() {
        const turns = yield* Turns
        const store = yield* StateStore
        const key = (yield* Entity.CurrentAddress).entityId
        yield* turns.local.forget(key)
        const admit = (payload: { readonly turnId: string; readonly from: string }) =>
          admission(self, store, endedHere, key, payload)
        return SessionEntity.of({
          Run: ({ payload }) => {
            const { guard, settle } = admit(payload)
            return turns.local.run(payload.channel, payload.request, Wire.isolationOf(payload), guard).pipe(
              Effect.map(Wire.outcomeToWire),
              Effect.onExit(settle)
            )
          },
          RunStream: ({ payload }) => {
            const { guard, settle } = admit(payload)
            return Stream.unwrap(Effect.map(
              turns.local.runStream(payload.channel, payload.request, Wire.isolationOf(payload), guard),
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
            )).pipe(Stream.ensuringWith(settle))
          },
          Reset: ({ payload }) => turns.local.resetSession(payload.channel, key)
        })
      }),
      // The session actor orders a key's turns and applies the busy policy; the entity only hands them over, in order.
      { concurrency: "unbounded" }
    )
  }))

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
  return couldNotHand(key, tag)
}

/** The retryable answer for a turn the cluster could not hand over (`why`: the cluster error's tag, or the transport). */
const couldNotHand = (key: string, why: string): TurnCancelled =>
  new TurnCancelled({
    key,
    reason: "shutdown",
    message: `the cluster could not hand this turn to the host that runs its session (${why}); send it again`
  })

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

// A defect while forwarding is the cluster's transport failing (a runner killed mid-call, its connection reset),
// not the agent: the caller gets the same retryable 503 as any turn the cluster could not hand over, and the
// defect goes to the log.
const forwardDefect = (key: string, defect: unknown): Effect.Effect<never, TurnCancelled> =>
  Effect.zipRight(
    Effect.logWarning("a forwarded turn failed in the cluster's transport", Cause.die(defect)),
    Effect.fail(couldNotHand(key, "transport failure"))
  )

const mapFailure = (key: string) => (error: unknown): TurnError => isTurnError(error) ? error : fromCluster(key)(error)

/** The `from` of a turn sent to a shard another runner owned when it was sent: it equals no runner's address. */
export const awayFrom = (self: string) => `${self}#away`

/**
 * The router every runner's `Turns` hands keyed turns to (`self`: this runner's address, sent with each turn whose
 * shard is this runner's when it is sent; `awayFrom(self)` with the others).
 */
export const makeRouter = (self: string) =>
  Effect.gen(function*() {
    const clientFor = yield* SessionEntity.client
    const sharding = yield* Sharding.Sharding
    const scope = yield* Effect.scope
    const away = awayFrom(self)
    const local = (key: string) => {
      const id = EntityId.make(key)
      return sharding.hasShardId(sharding.getShardId(id, SessionEntity.getShardGroup(id)))
    }

    const payloadOf = (turnId: string, channel: string, request: ChannelRequest, isolation: IsolationKeys) => ({
      turnId,
      from: local(request.session!.isolationKey) ? self : away,
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
            Effect.catchAllDefect((defect) => forwardDefect(key, defect)),
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
            return Stream.fromEffect(forwardDefect(key, Cause.squash(cause)))
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

export const layerRouter = (self: string) => Layer.scoped(TurnRouter, makeRouter(self))
