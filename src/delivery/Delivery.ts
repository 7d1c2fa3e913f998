/**
 * Reply delivery: resolving a request's `ResponseTarget` against the identity registry, annotating the reply,
 * shaping a private copy per destination, scheduling pushes to non-originating destinations, and recording the
 * caller's identity once delivery is resolved (so `active` can reach another channel).
 */
import { Context, Data, Effect, Layer, Metric, MetricLabel, Option, Schedule } from "effect"
import type { ResponseHookContext } from "../core/Channel.js"
import type { RegisteredChannel } from "../core/Channels.js"
import { Channels } from "../core/Channels.js"
import { HostConfig } from "../core/HostConfig.js"
import type { ChannelRequest, HostedRunResult } from "../domain/ChannelRequest.js"
import type { PushQueueFull } from "../domain/Errors.js"
import { InvalidRequest } from "../domain/Errors.js"
import type { ChannelIdentity, ResponseTarget } from "../domain/Identity.js"
import { identityToken } from "../domain/Identity.js"
import { issueId } from "../domain/Ids.js"
import type { AgentResponse, Message } from "../domain/Message.js"
import * as Redact from "../domain/Redact.js"
import * as Time from "../domain/Time.js"
import * as Now from "../internal/Now.js"
import { StateStore } from "../state/StateStore.js"

export interface Destination {
  readonly channel: string
  readonly identity: ChannelIdentity
}

export interface SkippedTarget {
  readonly target: string
  readonly reason: string
}

export interface DeliveryPlan {
  readonly includesOriginating: boolean
  readonly destinations: ReadonlyArray<Destination>
  readonly skipped: ReadonlyArray<SkippedTarget>
  /** False for the default `originating` target: nothing to record on the reply. */
  readonly annotate: boolean
  /** The request the plan was resolved for (after the run hook); delivery uses it over the channel's copy. */
  readonly request?: ChannelRequest
}

/** One push: a reply (and optionally the echoed input) for one destination. JSON-safe, so it can be persisted. */
export interface PushJob {
  readonly destination: Destination
  readonly request: ChannelRequest
  readonly result: HostedRunResult
  readonly echo: HostedRunResult | undefined
  readonly idempotencyKey: string
}

/** Pushes to other channels, by `channel` and `outcome`: delivered, retry (a retryable failure), failed. */
export const pushesTotal = Metric.counter("agent_host_pushes_total", {
  description: "pushes of replies to other channels, by channel and outcome (delivered, retry, failed)",
  incremental: true
})

export type PushOutcome = "delivered" | "retry" | "failed"

/** Counts one push attempt's outcome into `pushesTotal`. */
export const countPush = (channel: string, outcome: PushOutcome): Effect.Effect<void> =>
  Metric.increment(
    Metric.taggedWithLabels(pushesTotal, [MetricLabel.make("channel", channel), MetricLabel.make("outcome", outcome)])
  )

/** Counts `push`'s outcome into `pushesTotal` (a retryable failure as `retry`) and passes it on. */
export const countedPush = <E extends { readonly retryable?: boolean | undefined }, R>(
  channel: string,
  push: Effect.Effect<void, E, R>
): Effect.Effect<void, E, R> =>
  Effect.tapBoth(push, {
    onSuccess: () => countPush(channel, "delivered"),
    onFailure: (error) => countPush(channel, error.retryable === true ? "retry" : "failed")
  })

export class PushRejected extends Data.TaggedError("PushRejected")<{ readonly message: string }> {}

/** Where pushes go to be run: in process, or the durable task runner. */
export class PushScheduler extends Context.Tag("effect-agent-host/PushScheduler")<PushScheduler, {
  /** Accepts a push; never waits for room (a turn's reply is not left half delivered). */
  readonly schedule: (job: PushJob) => Effect.Effect<void, PushRejected>
  /**
   * Checked before a turn that may push runs: fails while no more pushes should be taken on (a full queue), so
   * the caller gets a 503 with `retry-after` at once. Absent: always admits.
   */
  readonly admit?: Effect.Effect<void, PushQueueFull>
}>() {}

export interface DeliveryShape {
  /**
   * Checked before a turn runs: refuses a request naming more destinations than `maxResponseTargets` (400), so
   * one request cannot fan out into thousands of pushes, and a request that may push while the push scheduler
   * takes no more (503 with `retry-after`), so its reply is never left undeliverable.
   */
  readonly admit: (request: ChannelRequest) => Effect.Effect<void, InvalidRequest | PushQueueFull>
  /** Resolves where the reply goes; reads the registry as it was before this request. */
  readonly resolve: (request: ChannelRequest) => Effect.Effect<DeliveryPlan>
  /** Schedules the pushes, records the caller's identity, and returns the originating copy (if any). */
  readonly deliver: (
    request: ChannelRequest,
    result: HostedRunResult,
    plan: DeliveryPlan
  ) => Effect.Effect<Option.Option<HostedRunResult>>
}

export class Delivery extends Context.Tag("effect-agent-host/Delivery")<Delivery, DeliveryShape>() {}

/**
 * Permission, for the request being served, to name any identity in a caller-supplied response target. The host
 * grants it to a bearer of an `AGENT_HOST_PUSH_KEYS` key; trusted code may provide it around `ctx.run`.
 */
export class TargetGrant extends Context.Tag("effect-agent-host/Delivery/TargetGrant")<TargetGrant, {
  /** Why the grant was given (for the logs), e.g. "push key". */
  readonly reason: string
}>() {}

/**
 * The explicit destinations (`channel:native_id` tokens, `identities`) a target names, as tokens, except the
 * requester itself (that is the originating reply). Bare channel names, `active` and `all_linked` resolve
 * through the registry of the request's own key, so they name nobody explicitly.
 */
export const explicitDestinations = (
  request: ChannelRequest,
  target: ResponseTarget | undefined
): ReadonlyArray<Destination> => {
  if (target === undefined) return []
  const from = request.channel
  const isRequester = (channel: string, nativeId: string) =>
    channel === from && (request.identity === undefined || request.identity.nativeId === nativeId)
  const out: Array<Destination> = []
  if (target.kind === "identities") {
    for (const identity of target.identities ?? []) {
      if (!isRequester(identity.channel, identity.nativeId)) out.push({ channel: identity.channel, identity })
    }
  } else if (target.kind === "channels") {
    for (const token of target.targets ?? []) {
      const colon = token.indexOf(":")
      if (token === "originating" || token === from || colon <= 0) continue
      const channel = token.slice(0, colon)
      const nativeId = token.slice(colon + 1)
      if (nativeId.length === 0 || isRequester(channel, nativeId)) continue
      out.push({ channel, identity: { channel, nativeId } as ChannelIdentity })
    }
  }
  return out
}

/**
 * The destinations of a caller-supplied target that the caller may not reach, as tokens (empty: all allowed).
 * `request` is the request as it will run (after the run hook and authorization: its key is the caller's own);
 * `callerTarget` is the target the channel handed in. Only destinations the caller named and the run still
 * uses are checked: what a run hook adds is trusted code. A destination is allowed when the registry links it
 * to the request's key (recorded there, linked there, or registered there).
 */
export const refusedTargets = (
  store: Pick<StateStore["Type"], "identities" | "linksFor" | "findKeyByIdentity">,
  request: ChannelRequest,
  callerTarget: ResponseTarget | undefined
): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function*() {
    const named = explicitDestinations(request, callerTarget)
    if (named.length === 0) return []
    const used = new Set(explicitDestinations(request, request.responseTarget).map((d) => identityToken(d.identity)))
    const key = request.session?.isolationKey
    const linked = new Set<string>()
    if (key !== undefined) {
      for (const identity of yield* store.identities(key)) linked.add(identityToken(identity))
      for (const link of yield* store.linksFor(key)) linked.add(`${link.channel}:${link.nativeId}`)
    }
    const refused: Array<string> = []
    for (const destination of named) {
      const token = identityToken(destination.identity)
      if (!used.has(token) || linked.has(token) || refused.includes(token)) continue
      const registered = key === undefined ?
        Option.none() :
        yield* store.findKeyByIdentity(destination.channel, destination.identity.nativeId)
      if (Option.isSome(registered) && registered.value === key) continue
      refused.push(token)
    }
    return refused
  })

/**
 * Shapes `result` for one destination with that channel's response hook, on a private copy: nothing a hook
 * does can reach another destination.
 */
export const shapeFor = (
  channel: RegisteredChannel | undefined,
  result: HostedRunResult,
  context: ResponseHookContext
): Effect.Effect<HostedRunResult> => {
  const hook = channel?.contribution.hooks?.response
  return hook === undefined ? Effect.succeed(result) : hook(structuredClone(result), context)
}

export const originatingOnly: DeliveryPlan = {
  includesOriginating: true,
  destinations: [],
  skipped: [],
  annotate: false
}

/** Stamps the delivery decision on the assistant messages; this annotated form is what history stores. */
export const annotate = (response: AgentResponse, request: ChannelRequest, plan: DeliveryPlan): AgentResponse => {
  if (!plan.annotate) return response
  const intendedTargets = plan.destinations.map((d) => identityToken(d.identity))
  const messages = response.messages.map((message): Message => {
    if (message.role !== "assistant") return message
    return {
      ...message,
      hosting: {
        ...message.hosting,
        intendedTargets,
        includesOriginating: plan.includesOriginating,
        ...(plan.skipped.length > 0 ? { skippedTargets: plan.skipped } : {}),
        ...(plan.includesOriginating ? { originatingChannel: request.channel } : {})
      }
    }
  })
  return { ...response, messages }
}

/** The user's turn as a result of its own, pushed before the reply when `echoInput` is set. */
export const echoOf = (request: ChannelRequest, result: HostedRunResult): HostedRunResult => ({
  ...result,
  result: undefined,
  response: {
    messages: request.input.filter((m) => m.role === "user").map(({ hosting: _hosting, ...rest }) => rest)
  }
})

const randomBase = issueId("reply_")

/** How many destinations a target names explicitly (`channels` entries, `identities`); the other kinds name none. */
export const namedTargets = (target: ResponseTarget | undefined): number => {
  if (target === undefined) return 0
  switch (target.kind) {
    case "channels":
      return target.targets?.length ?? 0
    case "identities":
      return target.identities?.length ?? 0
    default:
      return 0
  }
}

export const make = Effect.gen(function*() {
  const store = yield* StateStore
  const channels = yield* Channels
  const scheduler = yield* PushScheduler
  const settings = yield* HostConfig

  // Decided when called (a turn is admitted as it is prepared): the common answer is `Effect.void`, which the turn
  // continues from without a fiber step.
  const admit = (request: ChannelRequest): Effect.Effect<void, InvalidRequest | PushQueueFull> => {
    const named = namedTargets(request.responseTarget)
    if (named > settings.maxResponseTargets) {
      return Effect.fail(
        new InvalidRequest({
          message: `response_target names ${named} destinations; at most ${settings.maxResponseTargets} are allowed`,
          param: "response_target"
        })
      )
    }
    const kind = request.responseTarget?.kind
    const mayPush = kind !== undefined && kind !== "originating" && kind !== "none"
    return mayPush && scheduler.admit !== undefined ? scheduler.admit : Effect.void
  }

  const resolve = (request: ChannelRequest): Effect.Effect<DeliveryPlan> => {
    const target = request.responseTarget
    // The default: no registry read, no fiber step.
    if (target === undefined || target.kind === "originating") return Effect.succeed({ ...originatingOnly, request })
    if (target.kind === "none") {
      return Effect.succeed({ includesOriginating: false, destinations: [], skipped: [], annotate: true, request })
    }
    return resolveTarget(request, target)
  }

  const resolveTarget = Effect.fnUntraced(function*(request: ChannelRequest, target: ResponseTarget) {
    const key = request.session?.isolationKey
    const from = request.channel
    const candidates: Array<Destination> = []
    const skipped: Array<SkippedTarget> = []
    let includesOriginating = false
    // A destination is the requester itself when it names the requesting channel and the requester's own id
    // (or the requester has no identity): that is the originating reply, never a push.
    const isRequester = (channel: string, nativeId: string) =>
      channel === from && (request.identity === undefined || request.identity.nativeId === nativeId)
    const registered = key === undefined ? [] : yield* store.identities(key)
    const byChannel = new Map(registered.map((identity) => [identity.channel as string, identity]))
    switch (target.kind) {
      case "active": {
        // The registry still holds the state from before this request: the caller is recorded after delivery.
        const active = key === undefined ? Option.none() : yield* store.activeChannel(key)
        if (Option.isNone(active)) skipped.push({ target: "active", reason: "no active channel is known" })
        else if (active.value === from) includesOriginating = true
        else {
          const identity = byChannel.get(active.value)
          if (identity === undefined) skipped.push({ target: active.value, reason: "no known identity" })
          else candidates.push({ channel: active.value, identity })
        }
        break
      }
      case "all_linked": {
        const linked = key === undefined ? [] : yield* store.linksFor(key)
        const everyone: Array<ChannelIdentity> = [
          ...registered,
          ...linked.map((link) => ({ channel: link.channel, nativeId: link.nativeId }) as ChannelIdentity)
        ]
        for (const identity of everyone) {
          if (identity.channel === from) includesOriginating = true
          else candidates.push({ channel: identity.channel, identity })
        }
        break
      }
      case "identities": {
        for (const identity of target.identities ?? []) {
          if (isRequester(identity.channel, identity.nativeId)) includesOriginating = true
          else candidates.push({ channel: identity.channel, identity })
        }
        break
      }
      case "channels": {
        for (const token of target.targets ?? []) {
          if (token === "originating" || token === from) {
            includesOriginating = true
            continue
          }
          const colon = token.indexOf(":")
          if (colon > 0) {
            const channel = token.slice(0, colon)
            const nativeId = token.slice(colon + 1)
            if (nativeId.length === 0) skipped.push({ target: token, reason: "empty native id" })
            else if (isRequester(channel, nativeId)) includesOriginating = true
            else candidates.push({ channel, identity: { channel, nativeId } as ChannelIdentity })
            continue
          }
          const identity = byChannel.get(token)
          if (identity === undefined) skipped.push({ target: token, reason: "no known identity" })
          else candidates.push({ channel: token, identity })
        }
        break
      }
    }
    const destinations: Array<Destination> = []
    const seen = new Set<string>()
    for (const destination of candidates) {
      const token = identityToken(destination.identity)
      if (seen.has(token)) continue
      seen.add(token)
      const channel = channels.unsafeGet(destination.channel)
      if (channel === undefined) {
        skipped.push({ target: token, reason: "no channel with that name" })
      } else if (channel.contribution.push === undefined) {
        skipped.push({ target: token, reason: "the channel cannot push" })
      } else destinations.push(destination)
    }
    for (const s of skipped) {
      yield* Effect.logWarning("response target skipped").pipe(
        Effect.annotateLogs({ channel: from, target: Redact.token(s.target), reason: s.reason })
      )
    }
    if (destinations.length === 0 && !includesOriginating) {
      yield* Effect.logWarning("no destination could be resolved; replying on the originating channel").pipe(
        Effect.annotateLogs({ channel: from, target: target.kind })
      )
      includesOriginating = true
    }
    return { includesOriginating, destinations, skipped, annotate: true, request }
  })

  const shape = (channelName: string, result: HostedRunResult, context: ResponseHookContext) =>
    shapeFor(channels.unsafeGet(channelName), result, context)

  const deliver = (
    channelRequest: ChannelRequest,
    result: HostedRunResult,
    plan: DeliveryPlan
  ): Effect.Effect<Option.Option<HostedRunResult>> => {
    if (plan.destinations.length > 0) return deliverAll(channelRequest, result, plan)
    // The common case, nothing to push: record the caller, shape the originating copy.
    const request = plan.request ?? channelRequest
    const key = request.session?.isolationKey
    const shaped = plan.includesOriginating ?
      Now.map(
        shape(request.channel, result, {
          request,
          channel: request.channel,
          destination: undefined,
          originating: true,
          isEcho: false
        }),
        (shaped): Option.Option<HostedRunResult> => Option.some(shaped)
      ) :
      Effect.succeed(Option.none())
    if (request.identity === undefined || key === undefined) return shaped
    const identity = request.identity
    return Effect.zipRight(Effect.flatMap(Time.now, (at) => store.recordIdentity(key, identity, at)), shaped)
  }

  const deliverAll = Effect.fnUntraced(function*(
    channelRequest: ChannelRequest,
    result: HostedRunResult,
    plan: DeliveryPlan
  ) {
    const request = plan.request ?? channelRequest
    let includesOriginating = plan.includesOriginating
    if (plan.destinations.length > 0) {
      const echo = request.responseTarget?.echoInput === true ? echoOf(request, result) : undefined
      const base = request.attributes?.responseId ?? result.response.responseId ?? (yield* randomBase)
      let scheduled = 0
      for (const destination of plan.destinations) {
        const token = identityToken(destination.identity)
        yield* scheduler.schedule({ destination, request, result, echo, idempotencyKey: `${base}->${token}` }).pipe(
          Effect.zipRight(Effect.sync(() => scheduled++)),
          Effect.catchAll((error) =>
            Effect.logWarning("push could not be scheduled").pipe(
              Effect.annotateLogs({ target: Redact.token(token), reason: error.message })
            )
          )
        )
      }
      if (scheduled === 0 && !includesOriginating) {
        yield* Effect.logWarning("no push could be scheduled; replying on the originating channel").pipe(
          Effect.annotateLogs({ channel: request.channel })
        )
        includesOriginating = true
      }
    }
    const key = request.session?.isolationKey
    if (request.identity !== undefined && key !== undefined) {
      yield* store.recordIdentity(key, request.identity, yield* Time.now)
    }
    if (!includesOriginating) return Option.none()
    return Option.some(
      yield* shape(request.channel, result, {
        request,
        channel: request.channel,
        destination: undefined,
        originating: true,
        isEcho: false
      })
    )
  })

  return Delivery.of({ admit, resolve, deliver })
})

export const layer: Layer.Layer<Delivery, never, StateStore | Channels | PushScheduler | HostConfig> = Layer.effect(
  Delivery,
  make
)

const inProcessRetry = Schedule.exponential("1 second", 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(4)),
  Schedule.upTo("60 seconds")
)

/**
 * Runs pushes in this process, in the background, with retries: nothing survives a restart. The durable
 * task runner replaces it by default (see TaskRunner).
 */
export const layerPushInProcess: Layer.Layer<PushScheduler, never, Channels> = Layer.scoped(
  PushScheduler,
  Effect.gen(function*() {
    const channels = yield* Channels
    const scope = yield* Effect.scope
    const pushOne = (job: PushJob, result: HostedRunResult, isEcho: boolean) =>
      Effect.suspend(() => {
        const channel = channels.unsafeGet(job.destination.channel)
        const push = channel?.contribution.push
        if (channel === undefined || push === undefined) return Effect.void
        const shaped = shapeFor(channel, result, {
          request: job.request,
          channel: job.destination.channel,
          destination: job.destination.identity,
          originating: false,
          isEcho
        })
        return Effect.flatMap(shaped, (r) =>
          countedPush(
            job.destination.channel,
            push.push(job.destination.identity, r, { isEcho, idempotencyKey: job.idempotencyKey })
          ))
      })
    return PushScheduler.of({
      schedule: (job) =>
        Effect.asVoid(Effect.forkIn(
          Effect.gen(function*() {
            if (job.echo !== undefined) {
              yield* pushOne(job, job.echo, true).pipe(
                Effect.retry({ schedule: inProcessRetry, while: (e) => e.retryable }),
                Effect.catchAll((e) => Effect.logWarning("echo push failed", e.message))
              )
            }
            yield* pushOne(job, job.result, false).pipe(
              Effect.retry({ schedule: inProcessRetry, while: (e) => e.retryable }),
              Effect.catchAll((e) => Effect.logError("push failed", e.message))
            )
          }),
          scope
        ))
    })
  })
)
