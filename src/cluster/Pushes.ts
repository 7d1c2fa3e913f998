/**
 * Durable pushes in cluster mode (docs/SCALING.md, the decision): each push is a persisted cluster message to the
 * `AgentHostPush` entity of its destination (`channel:nativeId`), not a TaskRunner task. `schedule` returns once
 * the message is stored in Postgres (`SqlMessageStorage`), before the turn is acknowledged; the runner owning the
 * destination's shard delivers it, one at a time per destination, in order. The idempotency key is the message's
 * primary key, so scheduling it again is a no-op.
 *
 * When the owner dies, the shard's next owner redelivers every message without a stored reply. So a push is
 * delivered twice only if its owner died after the channel accepted it and before its reply was stored (the crash
 * window); the push carries its idempotency key, for destinations that dedupe. Retryable failures are retried in
 * the handler (`retry-after` honoured); a terminal one, or the last retry, is stored as the message's failed
 * reply (the dead letter) and logged.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import { Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import { Channels } from "../core/Channels.js"
import { countedPush, PushRejected, PushScheduler, shapeFor } from "../delivery/Delivery.js"
import { PushBody, toBody } from "../delivery/DurablePush.js"
import type { HostedRunResult } from "../domain/ChannelRequest.js"
import { PushFailed } from "../domain/Errors.js"
import { ChannelIdentity, identityToken } from "../domain/Identity.js"

/** A push as its message stores it (JSON of the encoded form, in the cluster's message table: src/cluster/PushAdmin.ts). */
export const DeliverPayload = Schema.Struct({
  idempotencyKey: Schema.String,
  channel: Schema.String,
  identity: ChannelIdentity,
  body: PushBody
})

export const PushEntity = Entity.make("AgentHostPush", [
  Rpc.make("Deliver", {
    payload: DeliverPayload.fields,
    primaryKey: (payload) => payload.idempotencyKey,
    error: PushFailed
  })
]).annotateRpcs(ClusterSchema.Persisted, true)

/** How often a retryable push failure is tried again before it becomes the message's failed reply. */
export const maxAttempts = 5

/**
 * Retries of a retryable failure: 0.5 s doubling, capped at 30 s, or the destination's `retry-after` when it
 * names one; `maxAttempts` attempts in all.
 */
const retryPolicy = Schedule.identity<PushFailed>().pipe(
  Schedule.intersect(
    Schedule.exponential(Duration.millis(500)).pipe(Schedule.either(Schedule.spaced(Duration.seconds(30))))
  ),
  Schedule.intersect(Schedule.recurs(maxAttempts - 1)),
  Schedule.modifyDelay(([[failure]], delay) => failure.retryAfter ?? delay)
)

// Channels register while the host builds, after a redelivered message may already be here: wait briefly.
const channelsRegisteredWait = Duration.seconds(10)

interface Delivery {
  readonly idempotencyKey: string
  readonly channel: string
  readonly identity: ChannelIdentity
  readonly body: PushBody
}

const deliver = (channels: Channels["Type"], delivery: Delivery): Effect.Effect<void, PushFailed> =>
  Effect.gen(function*() {
    const found = yield* channels.whenRegistered(delivery.channel, channelsRegisteredWait)
    const channel = Option.getOrUndefined(found)
    const push = channel?.contribution.push
    if (channel === undefined || push === undefined) {
      return yield* new PushFailed({
        reason: "rejected",
        retryable: false,
        message: `no channel named "${delivery.channel}" that can push is registered`
      })
    }
    const body = delivery.body
    const reply: HostedRunResult = {
      result: body.result === undefined ? body.response : body.result,
      response: body.response,
      session: body.session,
      sessionId: body.sessionId
    }
    const send = (result: HostedRunResult, isEcho: boolean): Effect.Effect<void, PushFailed> =>
      shapeFor(channel, result, {
        request: body.request,
        channel: channel.name,
        destination: delivery.identity,
        originating: false,
        isEcho
      }).pipe(
        Effect.flatMap((shaped) =>
          countedPush(
            channel.name,
            push.push(delivery.identity, shaped, { isEcho, idempotencyKey: delivery.idempotencyKey })
          )
        ),
        Effect.retry({ schedule: retryPolicy, while: (failure) => failure.retryable })
      )
    if (body.echo !== undefined) {
      const echo: HostedRunResult = { ...reply, result: undefined, response: body.echo }
      // A failed echo must not cost the reply.
      yield* send(echo, true).pipe(
        Effect.catchAll((failure) =>
          Effect.logWarning("echo push failed; sending the reply without it").pipe(
            Effect.annotateLogs({ channel: delivery.channel, error: failure.message })
          )
        )
      )
    }
    yield* send(reply, false).pipe(
      Effect.tapError((failure) =>
        Effect.logWarning("push failed; kept as the message's failed reply").pipe(
          Effect.annotateLogs({ channel: delivery.channel, error: failure.message })
        )
      )
    )
  })

/** The push entity's behaviour on the runner owning a destination's shard: one push at a time per destination. */
export const layerEntity = PushEntity.toLayer(
  Effect.gen(function*() {
    const channels = yield* Channels
    return PushEntity.of({ Deliver: ({ payload }) => deliver(channels, payload) })
  }),
  { concurrency: 1 }
)

/** The `PushScheduler` of cluster mode: a push is a persisted message, sent without waiting for its delivery. */
export const layerScheduler = Layer.effect(
  PushScheduler,
  Effect.gen(function*() {
    const clientFor = yield* PushEntity.client
    return PushScheduler.of({
      schedule: (job) =>
        clientFor(identityToken(job.destination.identity)).Deliver({
          idempotencyKey: job.idempotencyKey,
          channel: job.destination.channel,
          identity: job.destination.identity,
          body: toBody(job)
        }, { discard: true }).pipe(
          Effect.catchAllCause((cause) =>
            Effect.fail(new PushRejected({ message: `the push could not be stored: ${String(cause)}` }))
          )
        )
    })
  })
)

/** Pushes in cluster mode: the scheduler and the entity that delivers them. */
export const layer = Layer.merge(layerScheduler, layerEntity)
