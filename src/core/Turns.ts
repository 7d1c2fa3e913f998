/**
 * Running turns: the implementation behind `ChannelContext`. A turn is validated, authorized, then run by the
 * session actor of its isolation key. Inside the actor the user's input is appended to the session's history
 * before the target runs (an interrupted turn keeps what the user said), and the reply, annotated with the
 * delivery decision, when the turn completes; so history is written in turn order.
 *
 * Shutdown (`drain`): in-flight turns, running or queued, get a grace period; then every turn still running is
 * interrupted and fails with `TurnCancelled` (`reason: "shutdown"`), which each channel renders through its
 * usual error path (terminal stream event, SSE error frame, 503). In a cluster the grace covers the turns this
 * host forwarded to other runners too: their callers wait for the replies, until the grace is over.
 */
import {
  Cause,
  Chunk,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  Layer,
  LogLevel,
  Mailbox,
  Metric,
  MetricBoundaries,
  MetricKey,
  Option,
  RuntimeFlags,
  Stream
} from "effect"
import type { MetricHook } from "effect"
import { deniedCounterFor } from "../auth/Authorization.js"
import { Authorizer } from "../auth/Authorizer.js"
import { IdentityLinker } from "../auth/IdentityLinker.js"
import { annotate, Delivery, refusedTargets, TargetGrant } from "../delivery/Delivery.js"
import type { ChannelRequest, HostedRunResult } from "../domain/ChannelRequest.js"
import type { TurnError } from "../domain/Errors.js"
import { AccessDenied, AgentError, InvalidIsolationKey, InvalidRequest, TurnCancelled } from "../domain/Errors.js"
import { isolationKeyDigest, isolationKeyProblem, issueId } from "../domain/Ids.js"
import type { AgentResponseUpdate, Message } from "../domain/Message.js"
import { ResponseAccumulator } from "../domain/Message.js"
import * as Redact from "../domain/Redact.js"
import type { Bytes } from "../domain/Size.js"
import * as Size from "../domain/Size.js"
import { wallClockSleep } from "../domain/Time.js"
import * as ClientShield from "../http/ClientShield.js"
import { BoundedCache } from "../internal/BoundedCache.js"
import * as Now from "../internal/Now.js"
import { SlotSet } from "../internal/SlotSet.js"
import * as ConversationStoreModule from "../state/ConversationStore.js"
import { ConversationStore } from "../state/ConversationStore.js"
import { StateStore } from "../state/StateStore.js"
import type { ChannelContext, ChannelHooks, RunExtras, StreamExtras, TurnOutcome, TurnStream } from "./Channel.js"
import { Channels } from "./Channels.js"
import { HostConfig } from "./HostConfig.js"
import type { IsolationKeys, RequestContextValue } from "./RequestContext.js"
import { noIsolationKeys, RequestContext } from "./RequestContext.js"
import type { BusyPolicy } from "./Sessions.js"
import { Sessions } from "./Sessions.js"
import type { TargetInfo, Turn } from "./Target.js"
import { Target } from "./Target.js"

export interface TurnsShape {
  /** The context for one channel. */
  readonly contextFor: (channel: string) => ChannelContext
  /** Runs a turn with request-scoped isolation keys (from trusted headers). */
  readonly withIsolation: (isolation: IsolationKeys) => <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /**
   * Shutdown: tells channels the host is draining (`ChannelContext.draining`), waits until no turn is running,
   * queued or forwarded to another runner and awaited here, at most `grace`, then interrupts every turn still running: each fails with `TurnCancelled`
   * (`reason: "shutdown"`), and a turn submitted afterwards fails with it at once. Idempotent.
   */
  readonly drain: (grace: Duration.Duration) => Effect.Effect<void>
  /** What the cache of recent histories holds now (bounded by `historyCacheBytes`). */
  readonly historyCache: Effect.Effect<HistoryCacheStats>
  /** Runs prepared turns in this process's session actors: what a `TurnRouter` calls on the key's owner. */
  readonly local: LocalTurns
}

/**
 * Turns already prepared by some host (run hook, checks, authorization done there), run in this process's actor of
 * their key. `guard` runs in the actor just before the turn begins (a failure ends the turn without running it).
 */
export interface LocalTurns {
  readonly run: (
    channel: string,
    request: ChannelRequest,
    isolation: IsolationKeys,
    guard?: Effect.Effect<void, TurnError>
  ) => Effect.Effect<TurnOutcome, TurnError>
  readonly runStream: (
    channel: string,
    request: ChannelRequest,
    isolation: IsolationKeys,
    guard?: Effect.Effect<void, TurnError>
  ) => Effect.Effect<TurnStream, TurnError>
  readonly resetSession: (channel: string, isolationKey: string) => Effect.Effect<string>
  /** Drops what this process caches of a key (its alias, its recent history): another host may have written since. */
  readonly forget: (isolationKey: string) => Effect.Effect<void>
}

/**
 * Where keyed turns run. Absent (one node), in this process's session actors. Provided (cluster mode, src/cluster),
 * every prepared turn with a session is handed to it, and it runs the turn on the host that owns the key (through
 * that host's `Turns.local`); sessionless turns stay here.
 */
export interface TurnRouterShape {
  readonly run: (channel: string, request: ChannelRequest, isolation: IsolationKeys) => Effect.Effect<
    TurnOutcome,
    TurnError
  >
  readonly runStream: (channel: string, request: ChannelRequest, isolation: IsolationKeys) => Effect.Effect<
    TurnStream,
    TurnError
  >
  readonly resetSession: (channel: string, isolationKey: string) => Effect.Effect<string>
}

export class TurnRouter extends Context.Tag("effect-agent-host/Turns/TurnRouter")<TurnRouter, TurnRouterShape>() {}

export interface HistoryCacheStats {
  readonly sessions: number
  readonly bytes: Bytes
  readonly maxBytes: Bytes
}

export class Turns extends Context.Tag("effect-agent-host/Turns")<Turns, TurnsShape>() {}

const turnsTotalName = "agent_host_turns_total"
const turnsTotalOptions = { description: "turns accepted to run, by channel", incremental: true } as const

/** Turns started, by channel (at `info` level there is no log line per turn; this counts them). */
export const turnsTotal = Metric.counter(turnsTotalName, turnsTotalOptions)

const turnDurationName = "agent_host_turn_duration_seconds"
const turnDurationOptions = {
  description: "how long turns ran (from the start of their run in the session, queueing excluded), by channel"
} as const
// 5 ms to about 5.5 minutes, doubling: a cached reply to a long tool-using agent turn.
const turnDurationBoundaries = MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 17 })

/** Turn latency, by channel: each turn's run, failed or not (a stream's until its last update). */
export const turnDuration = Metric.histogram(turnDurationName, turnDurationBoundaries, turnDurationOptions.description)

interface ChannelInfo {
  readonly run: ChannelHooks["run"]
  readonly streamTransform: ChannelHooks["streamTransform"]
  readonly busyPolicy: BusyPolicy
  /** The registry's hook of `turnsTotal` tagged with the channel: updating it is a plain call, no key hashing. */
  readonly turns: MetricHook.MetricHook.Counter<number>
  /** The registry's hook of `turnDuration` tagged with the channel. */
  readonly duration: MetricHook.MetricHook.Histogram
}

interface Prepared {
  readonly request: ChannelRequest
  readonly isolation: IsolationKeys
  /** The caller's fiber may run the turn itself (see `InlineTurns`). */
  readonly inline: boolean
  /** The caller's record of the reply, committed with it (`RunExtras.withReply`). */
  readonly withReply?: ((outcome: TurnOutcome) => Effect.Effect<void>) | undefined
}

/**
 * Provided around a caller whose fiber nothing but the host interrupts (the HTTP handler, which does not interrupt
 * a request's fiber when its client goes away): a blocking turn on an idle session then runs in that fiber instead
 * of one forked for it. Shutdown and the `interrupt` busy policy still stop it; a client that goes away does not.
 */
export class InlineTurns extends Context.Tag("effect-agent-host/Turns/InlineTurns")<InlineTurns, true>() {}

// The trusted isolation headers of the HTTP request being served, if any.
class CurrentIsolation extends Context.Tag("effect-agent-host/Turns/CurrentIsolation")<
  CurrentIsolation,
  IsolationKeys
>() {}

const stamp = (request: ChannelRequest): ReadonlyArray<Message> => {
  const input = request.input
  if (input.length === 0) return input
  const last = input[input.length - 1]!
  const hosting = {
    ...last.hosting,
    channel: request.channel,
    ...(request.identity !== undefined ? { identity: request.identity } : {}),
    ...(request.responseTarget !== undefined ? { responseTarget: request.responseTarget } : {})
  }
  return [...input.slice(0, -1), { ...last, hosting }]
}

const agentDefect = (cause: unknown) =>
  new AgentError({ message: "the agent failed unexpectedly", code: "agent_defect", cause })

const shutdownError = (key: string | undefined) =>
  new TurnCancelled({
    key: key ?? "",
    reason: "shutdown",
    message: "the server is shutting down and stopped this turn; send it again in a moment"
  })

/**
 * Runs a wait of shutdown in a fiber of its own. Shutdown runs in finalizers, often of the fiber being
 * interrupted (SIGTERM interrupts the main fiber): an interruptible wait there would end at once, and an
 * uninterruptible race could not stop its loser. The own fiber is interruptible and not interrupted.
 */
const detached = <A>(wait: Effect.Effect<A>): Effect.Effect<A> =>
  Effect.flatMap(Effect.forkDaemon(Effect.interruptible(wait)), Fiber.join)

/**
 * Whether `fiber` has been told to stop (an interruption it has not yet acted on, e.g. while uninterruptible). The
 * fiber runtime's own check, which the public `RuntimeFiber` type does not show (as `Now.setFiberRef`).
 */
const isInterrupted = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  (fiber as unknown as { readonly isInterrupted: () => boolean }).isInterrupted()

/**
 * `Effect.locally` for the turn's hot path: one update of the ref and one set back, in about half the steps of the
 * fiber `locally` (an acquire/use/release) takes. Restored however `effect` ends.
 */
const setLocally = <A, E, R, V>(
  effect: Effect.Effect<A, E, R>,
  ref: FiberRef.FiberRef<V>,
  value: (before: V) => V
): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(FiberRef.getAndUpdate(ref, value), (before) =>
      Effect.matchCauseEffect(restore(effect), {
        onFailure: (cause) => Effect.zipRight(FiberRef.set(ref, before), Effect.failCause(cause)),
        onSuccess: (a) => Effect.as(FiberRef.set(ref, before), a)
      }))
  )

/** `Effect.provideService(RequestContext, value)`, with `setLocally`. */
const withRequestContext =
  (value: RequestContextValue) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, RequestContext>> =>
    setLocally(
      effect as Effect.Effect<A, E>,
      FiberRef.currentContext,
      (context) => Context.add(context, RequestContext, value)
    )

export const make = Effect.gen(function*() {
  const target = yield* Target
  const sessions = yield* Sessions
  const store = yield* StateStore
  const delivery = yield* Delivery
  const channels = yield* Channels
  const authorizer = yield* Authorizer
  const settings = yield* HostConfig
  // The linker the authorizer decides with, when the core's authorization provides one: channels get its
  // link commands (`ChannelContext.linking`).
  const linking = Option.flatMap(
    yield* Effect.serviceOption(IdentityLinker),
    (linker) => Option.fromNullable(linker.linking)
  )
  // OpenAI Conversations (Responses channel): the persistent store when the state layers provide one, else in
  // process (a host composed without it keeps conversations until it stops).
  const conversations = yield* Option.match(yield* Effect.serviceOption(ConversationStore), {
    onNone: () => ConversationStoreModule.makeMemory,
    onSome: Effect.succeed
  })
  const hostScope = yield* Effect.scope
  const router = Option.getOrUndefined(yield* Effect.serviceOption(TurnRouter))
  // Shutdown state: `draining` once the host stops accepting, `stopped` once the grace is over; `running` holds
  // the fibers of turns whose work is under way, so the grace can end early and the rest can be interrupted.
  const draining = yield* Deferred.make<void>()
  let stopped = false
  const running = new SlotSet<Fiber.RuntimeFiber<unknown, unknown>>()
  // Turns this host handed to another runner (cluster mode) and still waits for: shutdown waits for them too, in
  // the same grace, so their callers get their replies; `stopping` ends the waits of those left after it.
  let forwarding = 0
  const stopping = yield* Deferred.make<void>()
  // Read-through caches of session ids and recent histories: this process is the only writer of a key's state (the
  // state directory has one owner; in a cluster, the key's owner, which drops them when ownership moves: `forget`),
  // so they never go stale; they save two statements per turn.
  const aliases = new BoundedCache<string, string>(100_000)
  // Bounded by an estimate of the heap the histories hold, too: a few sessions of huge messages must not grow the
  // process without limit. A history's size is summed when it is loaded, then kept up to date as messages are
  // added and dropped (each message is measured when it joins and when it leaves, not on every turn).
  const listBytes = (messages: ReadonlyArray<Message>): number => {
    let total = 0
    for (const message of messages) total += 8 + Size.estimate(message)
    return total
  }
  const historySize = (messages: ReadonlyArray<Message>): Bytes => Size.bytes(64 + listBytes(messages))
  const histories = new BoundedCache<string, ReadonlyArray<Message>>(10_000, {
    maxBytes: settings.historyCacheBytes,
    sizeOf: historySize
  })
  // A turn sees the most recent `historyLimit` messages: long conversations cost the same per turn as short ones.
  const historyLimit = Math.max(0, settings.historyLimit)
  const recent = (messages: ReadonlyArray<Message>) =>
    messages.length <= historyLimit ? messages : messages.slice(messages.length - historyLimit)

  /**
   * Caches `base` + `added` (the most recent `historyLimit`) as the history of `sessionId`. When `base` is what the
   * cache holds, the size is its size plus the added messages, less the dropped ones; otherwise it is measured.
   */
  const extendHistory = (sessionId: string, base: ReadonlyArray<Message>, added: ReadonlyArray<Message>) => {
    const all = base.length === 0 ? added : added.length === 0 ? base : [...base, ...added]
    const kept = recent(all)
    const cached = histories.peek(sessionId)
    if (cached === undefined || cached.value !== base) return histories.set(sessionId, kept, historySize(kept))
    const dropped = all.length - kept.length
    const size = cached.size + listBytes(added) - (dropped === 0 ? 0 : listBytes(all.slice(0, dropped)))
    histories.set(sessionId, kept, Size.bytes(size))
  }

  const sessionIdOf = (key: string): Effect.Effect<string> =>
    Effect.suspend(() => {
      const cached = aliases.get(key)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.map(store.getAlias(key), (alias) => {
        const id = Option.getOrElse(alias, () => key)
        aliases.set(key, id)
        return id
      })
    })

  const historyOf = (sessionId: string): Effect.Effect<ReadonlyArray<Message>> =>
    Effect.suspend(() => {
      const cached = histories.get(sessionId)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.tap(store.loadHistory(sessionId, historyLimit), (history) => histories.set(sessionId, history))
    })

  /**
   * The caller's response target (as the channel handed it in, before the run hook) may name only identities
   * linked to the key the turn runs under, unless the request carries a `TargetGrant` (a push key). Refused
   * before the turn runs: nothing is pushed, nothing stored.
   */
  const checkTarget = Effect.fnUntraced(function*(request: ChannelRequest, prepared: ChannelRequest) {
    if (request.responseTarget === undefined) return
    const grant = yield* Effect.serviceOption(TargetGrant)
    if (Option.isSome(grant)) return
    const refused = yield* refusedTargets(store, prepared, request.responseTarget)
    if (refused.length === 0) return
    const shown = refused.slice(0, 10).map((token) => token.length > 100 ? `${token.slice(0, 100)}...` : token)
    const more = refused.length > shown.length ? ` and ${refused.length - shown.length} more` : ""
    // The caller is told what it named; the log tags it (a native id can be a bearer: a web chat browser's).
    yield* Effect.logInfo("response target refused").pipe(
      Effect.annotateLogs({ channel: prepared.channel, refused: refused.slice(0, 10).map(Redact.token).join(",") })
    )
    yield* Metric.increment(deniedCounterFor(prepared.channel, "response_target_refused"))
    return yield* new AccessDenied({
      reasonCode: "response_target_refused",
      message:
        `the response target names destinations this caller may not reach: ${
          shown.join(", ")
        }${more}. A caller may target its own channel, "active", "all_linked", a channel name, or an identity linked ` +
        `to its own session; naming any other identity needs an API key listed in AGENT_HOST_PUSH_KEYS ` +
        `(Authorization: Bearer <key>) or a channel run hook that sets the target`
    })
  })

  // What the hot path needs of a channel, looked up once: the registry is filled after the contexts are made.
  const channelInfo = new Map<string, ChannelInfo>()
  const infoOf = (channel: string): ChannelInfo => {
    const known = channelInfo.get(channel)
    if (known !== undefined) return known
    const contribution = channels.unsafeGet(channel)?.contribution
    const info: ChannelInfo = {
      run: contribution?.hooks?.run,
      streamTransform: contribution?.hooks?.streamTransform,
      busyPolicy: contribution?.busyPolicy ?? "queue",
      turns: Metric.globalMetricRegistry.get(
        MetricKey.tagged(MetricKey.counter(turnsTotalName, turnsTotalOptions), "channel", channel)
      ),
      duration: Metric.globalMetricRegistry.get(
        MetricKey.tagged(
          MetricKey.histogram(turnDurationName, turnDurationBoundaries, turnDurationOptions.description),
          "channel",
          channel
        )
      )
    }
    if (contribution !== undefined) channelInfo.set(channel, info)
    return info
  }

  // The checks a request passes once its run hook has run; synchronous failures cost no fiber work.
  const check = (prepared: ChannelRequest): TurnError | undefined => {
    const key = prepared.session?.isolationKey
    if (key !== undefined) {
      const problem = isolationKeyProblem(key)
      if (problem !== undefined) {
        return new InvalidIsolationKey({ key: key.slice(0, 300), message: `isolation key ${problem}` })
      }
    }
    if (prepared.input.length === 0) return new InvalidRequest({ message: "the request has no input messages" })
    return undefined
  }

  // At debug only: at info it would be a line per turn on the hot path; `agent_host_turns_total` counts them.
  // Undefined (nothing built, no digest hashed) when the fiber does not log at debug.
  const logRequest = (request: ChannelRequest, fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
    LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug) ?
      undefined :
      Effect.logDebug("channel request").pipe(
        Effect.annotateLogs({
          channel: request.channel,
          operation: request.operation,
          stream: request.stream,
          // A digest, as on the turn's span: a key can hold a bearer (a web chat browser id).
          session_sha256: request.session === undefined ? "none" : isolationKeyDigest(request.session.isolationKey)
        })
      )

  /**
   * Run hook, checks, admission, authorization, the response target's check: then `next` with the prepared turn,
   * in the caller's fiber (read for its isolation headers and whether the turn may run inline). Steps that have
   * already succeeded (no hook, an open or API-key channel, nothing to push) are continued at once.
   */
  const prepareThen = <A>(
    info: ChannelInfo,
    request: ChannelRequest,
    raw: unknown,
    next: (
      prepared: Prepared,
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      flags: RuntimeFlags.RuntimeFlags
    ) => Effect.Effect<A, TurnError>
  ): Effect.Effect<A, TurnError> => {
    const afterHook = (hooked: ChannelRequest): Effect.Effect<A, TurnError> => {
      const invalid = check(hooked)
      if (invalid !== undefined) return Effect.fail(invalid)
      // Verified claims come from authorization alone.
      const unverified = hooked.verified === undefined ? hooked : { ...hooked, verified: undefined }
      return Now.andThen(
        Now.zipRight(delivery.admit(hooked), authorizer.authorize(unverified)),
        (authorized) => {
          const finish = Effect.withFiberRuntime<A, TurnError>((fiber, status) => {
            const context = fiber.currentContext
            const prepared: Prepared = {
              request: authorized,
              isolation: Option.getOrElse(Context.getOption(context, CurrentIsolation), () => noIsolationKeys),
              // An HTTP request's fiber (a disconnect can be shielded from it), or a caller that says it is safe.
              inline: ClientShield.stateOf(fiber) === "interrupts" ||
                Option.isSome(Context.getOption(context, InlineTurns))
            }
            info.turns.update(1)
            const log = logRequest(authorized, fiber)
            const flags = status.runtimeFlags
            return log === undefined ?
              next(prepared, fiber, flags) :
              Effect.zipRight(log, Effect.suspend(() => next(prepared, fiber, flags)))
          })
          return request.responseTarget === undefined ?
            finish :
            Effect.zipRight(checkTarget(request, authorized), finish)
        }
      )
    }
    return info.run === undefined ? afterHook(request) : Effect.flatMap(info.run(request, raw), afterHook)
  }

  const noHistory: ReadonlyArray<Message> = []

  // Records the input before the target runs, so a turn cut short (shutdown, crash) keeps it. The turn sees the
  // history from before its input: its input reaches it once, as `input`.
  const startTurn = (
    request: ChannelRequest,
    isolation: IsolationKeys,
    sessionId: string | undefined,
    history: ReadonlyArray<Message>
  ): Effect.Effect<Turn> => {
    const context: RequestContextValue = {
      channel: request.channel,
      operation: request.operation,
      sessionKey: request.session?.isolationKey,
      isolation,
      responseId: request.attributes?.responseId,
      previousResponseId: request.attributes?.previousResponseId,
      identity: request.identity,
      ...(request.verified === undefined ? {} : { verified: request.verified })
    }
    const turn: Turn = { input: stamp(request), history, sessionId, options: request.options ?? {}, context }
    if (sessionId === undefined || turn.input.length === 0) return Effect.succeed(turn)
    if (request.session?.fresh !== true) extendHistory(sessionId, history, turn.input)
    // Not waited for: the reply's append commits after it (batches commit in order), and the reply waits for that.
    return Effect.as(store.appendHistory(sessionId, turn.input, { wait: false }), turn)
  }

  // Session id and recent history come from the caches when they can (no store read, no extra fiber step); a key
  // the channel has just minted (`fresh`) has nothing stored, so it is not looked up at all.
  const beginTurn = (request: ChannelRequest, isolation: IsolationKeys): Effect.Effect<Turn> => {
    const session = request.session
    if (session === undefined) return startTurn(request, isolation, undefined, noHistory)
    const key = session.isolationKey
    if (session.fresh === true) return startTurn(request, isolation, key, noHistory)
    const sessionId = aliases.get(key)
    if (sessionId === undefined) {
      return Effect.flatMap(
        sessionIdOf(key),
        (id) => Effect.flatMap(historyOf(id), (history) => startTurn(request, isolation, id, history))
      )
    }
    const history = histories.get(sessionId)
    return history === undefined ?
      Effect.flatMap(historyOf(sessionId), (loaded) => startTurn(request, isolation, sessionId, loaded)) :
      startTurn(request, isolation, sessionId, history)
  }

  // Resolve, annotate, record, deliver: all inside the turn, so what is stored and pushed does not depend on the
  // caller still being there.
  const finishTurn = (
    request: ChannelRequest,
    turn: Turn,
    response: HostedRunResult["response"],
    result: unknown,
    withReply?: (outcome: TurnOutcome) => Effect.Effect<void>
  ): Effect.Effect<TurnOutcome> =>
    Now.andThen(delivery.resolve(request), (plan) => {
      const annotated = annotate(response, request, plan)
      const hosted: HostedRunResult = {
        result: result === response ? annotated : result,
        response: annotated,
        session: request.session,
        sessionId: turn.sessionId
      }
      const deliver = Now.map(
        delivery.deliver(request, hosted, plan),
        (originating): TurnOutcome => ({ result: hosted, originating })
      )
      const sessionId = turn.sessionId
      if (sessionId === undefined) return withReply === undefined ? deliver : Effect.tap(deliver, withReply)
      // A session the channel has just minted (`fresh`) is not cached: most are never continued (one-shot
      // requests), and caching each would keep its messages alive until evicted, to be promoted and collected as
      // old garbage. One that is continued is read from the store once, by its next turn, and cached from then on.
      if (request.session?.fresh !== true) {
        // What startTurn cached (the history and this turn's input), unless it was evicted or dropped meanwhile.
        const cached = histories.peek(sessionId)?.value
        const last = turn.input[turn.input.length - 1]
        const base =
          cached !== undefined && (last === undefined ? cached === turn.history : cached[cached.length - 1] === last) ?
            cached :
            recent([...turn.history, ...turn.input])
        extendHistory(sessionId, base, annotated.messages)
      }
      if (withReply === undefined) {
        const appended = store.appendHistory(sessionId, annotated.messages)
        // Nothing left to run after the commit (the common case): the outcome is ready now.
        const ready = Now.succeeded(deliver)
        return ready === undefined ? Effect.zipRight(appended, deliver) : Effect.as(appended, ready.value)
      }
      // The append is queued, not waited for: the caller's write is committed with it or after it (writes commit
      // in order), and the turn completes only once that write has.
      return Effect.zipRight(
        store.appendHistory(sessionId, annotated.messages, { wait: false }),
        Effect.tap(deliver, withReply)
      )
    })

  const runTurn = (
    request: ChannelRequest,
    isolation: IsolationKeys,
    withReply?: (outcome: TurnOutcome) => Effect.Effect<void>
  ) =>
    Effect.gen(function*() {
      const turn = yield* beginTurn(request, isolation)
      const out = yield* target.run(turn).pipe(
        withRequestContext(turn.context),
        Effect.catchAllDefect((defect) => Effect.fail(agentDefect(defect)))
      )
      return yield* finishTurn(request, turn, out.response, out.result, withReply)
    })

  /**
   * How an inline turn (blocking or streamed) that failed reports it: a defect in the target is the agent's, an
   * interruption is shutdown's (once turns are stopped) or a cancellation, and a cancellation after shutdown stopped
   * turns is shutdown's.
   */
  const inlineFailure = (cause: Cause.Cause<TurnError>, inTarget: boolean, key: string): Cause.Cause<TurnError> => {
    const defect = inTarget ? Cause.dieOption(cause) : Option.none()
    if (Option.isSome(defect)) return Cause.fail(agentDefect(defect.value))
    if (Cause.isInterruptedOnly(cause)) {
      return Cause.fail(
        stopped ?
          shutdownError(key) :
          new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })
      )
    }
    if (stopped) {
      const error = Cause.failureOption(cause)
      if (Option.isSome(error) && error.value._tag === "TurnCancelled") return Cause.fail(shutdownError(key))
    }
    return cause
  }

  /**
   * The blocking turn of an idle session run in the caller's fiber as one frame: what `Sessions.submit`'s inline
   * run, `tracked`, `shielded`, `explain` and `runTurn` do, with the fiber's refs set and restored directly rather
   * than through an acquire/release each. The actor is busy from `enterInline` to `leave` (later turns queue
   * behind it); the turn is interruptible only in its own region, by shutdown or the `interrupt` policy, which
   * find this fiber as the actor's job and in `running`; the client shield is `shielded` for the whole turn; the
   * target runs with its `RequestContext`. Anything else (a busy actor, an interruptible caller) takes `runPrepared`.
   */
  const runInlineTurn = (
    info: ChannelInfo,
    prepared: Prepared,
    key: string,
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    flags: RuntimeFlags.RuntimeFlags
  ): Effect.Effect<TurnOutcome, TurnError> => {
    if (stopped) return Effect.fail(shutdownError(key))
    // The frame's set-up and restore below must not be cut short by an interruption.
    if (RuntimeFlags.interruption(flags)) return runPrepared(info, prepared)
    const entry = sessions.enterInline(key, info.busyPolicy, fiber, prepared.request.session?.fresh === true)
    if (entry === undefined) return runPrepared(info, prepared)
    const request = prepared.request
    const shield = ClientShield.shield(fiber)
    const context = fiber.getFiberRef(FiberRef.currentContext)
    const slot = running.add(fiber)
    const started = performance.now()
    // Set while the target runs: a defect there is the agent's (`agent_defect`), as `runTurn` reports it.
    let inTarget = false
    const end = () => {
      ClientShield.restore(fiber, shield)
      if (inTarget) Now.setFiberRef(fiber, FiberRef.currentContext, context)
      running.remove(slot, fiber)
      info.duration.update((performance.now() - started) / 1000)
    }
    const body: Effect.Effect<TurnOutcome, TurnError> = Now.andThen(beginTurn(request, prepared.isolation), (turn) => {
      const out = target.run(turn)
      const ready = Now.succeeded(out)
      if (ready !== undefined) {
        return finishTurn(request, turn, ready.value.response, ready.value.result, prepared.withReply)
      }
      inTarget = true
      Now.setFiberRef(fiber, FiberRef.currentContext, Context.add(context, RequestContext, turn.context))
      return Effect.flatMap(out, (done) => {
        inTarget = false
        Now.setFiberRef(fiber, FiberRef.currentContext, context)
        return finishTurn(request, turn, done.response, done.result, prepared.withReply)
      })
    })
    return Effect.matchCauseEffect(Effect.interruptible(body), {
      onFailure: (cause) => {
        end()
        return Now.zipRight(sessions.leave(entry), Effect.failCause(inlineFailure(cause, inTarget, key)))
      },
      onSuccess: (outcome) => {
        end()
        return Now.as(sessions.leave(entry), outcome)
      }
    })
  }

  // A turn's work as it runs (in the actor, or detached): refused once shutdown has stopped turns, tracked while
  // it runs so shutdown can wait for it and, after the grace, interrupt it; timed into `turnDuration`.
  const tracked = <A>(
    info: ChannelInfo,
    key: string | undefined,
    work: Effect.Effect<A, TurnError>
  ): Effect.Effect<A, TurnError> =>
    Effect.withFiberRuntime<A, TurnError>((fiber) => {
      if (stopped) return Effect.fail(shutdownError(key))
      const slot = running.add(fiber)
      const started = performance.now()
      return Effect.ensuring(
        work,
        Effect.sync(() => {
          running.remove(slot, fiber)
          info.duration.update((performance.now() - started) / 1000)
        })
      )
    })

  // A turn that ended because shutdown interrupted it reports why: shutdown, not a plain cancellation.
  const explain = (key: string | undefined) => <A>(waiter: Effect.Effect<A, TurnError>): Effect.Effect<A, TurnError> =>
    Effect.catchAllCause(waiter, (cause) => {
      if (!stopped) return Effect.failCause(cause)
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && failure.value._tag === "TurnCancelled") return Effect.fail(shutdownError(key))
      if (Cause.isInterruptedOnly(cause)) return Effect.fail(shutdownError(key))
      return Effect.failCause(cause)
    })

  // Runs work in the session's actor, or detached in the host scope for sessionless turns; the caller only
  // waits for it. Under `onDisconnect: "cancel"` the wait is interruptible (route handlers run uninterruptibly,
  // a client disconnect interrupts them) and interrupting it cancels the turn; under `continue` it is not.
  // While a turn runs in an HTTP request's fiber, the client leaving does not interrupt it (ClientShield).
  const shielded = <A, E>(work: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.withFiberRuntime((fiber) => {
      const was = ClientShield.shield(fiber)
      return Effect.ensuring(work, Effect.sync(() => ClientShield.restore(fiber, was)))
    })

  const submit = <A>(
    info: ChannelInfo,
    request: ChannelRequest,
    work: Effect.Effect<A, TurnError>,
    inline = false
  ): Effect.Effect<Effect.Effect<A, TurnError>, TurnError> => {
    const key = request.session?.isolationKey
    const cancel = request.onDisconnect === "cancel"
    if (inline && !cancel) {
      if (key === undefined) {
        // No actor to order it: in the caller's fiber, interruptible only in its own region (by shutdown).
        return Effect.succeed(
          Effect.uninterruptible(
            Effect.catchAllCause(Effect.interruptible(shielded(work)), (cause) =>
              Cause.isInterruptedOnly(cause) ?
                Effect.fail(new TurnCancelled({ key: "", message: "the turn was cancelled" })) :
                Effect.failCause(cause))
          ).pipe(explain(key))
        )
      }
      return Effect.map(
        sessions.submit(key, info.busyPolicy, () => shielded(work), {
          inline: true,
          transient: request.session?.fresh === true
        }),
        explain(key)
      )
    }
    if (key === undefined) {
      // Route handlers run uninterruptibly; the detached turn must stay interruptible for shutdown.
      return Effect.map(
        Effect.forkIn(Effect.interruptible(work), hostScope),
        (fiber) =>
          (cancel ?
            Effect.onInterrupt(Effect.interruptible(Effect.flatten(fiber.await)), () => Fiber.interruptFork(fiber)) :
            Effect.flatten(fiber.await)).pipe(explain(key))
      )
    }
    const policy = info.busyPolicy
    const transient = request.session?.fresh === true
    return Effect.map(
      cancel ?
        Effect.map(
          sessions.submit(key, policy, () => work, { onDisconnect: "cancel", transient }),
          Effect.interruptible
        ) :
        sessions.submit(key, policy, () => work, { transient }),
      explain(key)
    )
  }

  // A forwarded turn's wait, counted for shutdown. Both sides of the race are interruptible: route handlers run
  // uninterruptibly, and the race must be able to stop its loser (the forwarded call, when the grace is over).
  const stoppedByShutdown = (key: string | undefined) =>
    Effect.interruptible(Effect.zipRight(Deferred.await(stopping), Effect.fail(shutdownError(key))))
  const forwarded = <A>(key: string | undefined, wait: Effect.Effect<A, TurnError>): Effect.Effect<A, TurnError> =>
    Effect.suspend(() => {
      if (stopped) return Effect.fail(shutdownError(key))
      forwarding++
      return Effect.ensuring(
        Effect.raceFirst(Effect.interruptible(wait), stoppedByShutdown(key)),
        Effect.sync(() => forwarding--)
      )
    })
  // A forwarded stream counts until its outcome is known (read by a fiber of the host, whoever reads the stream).
  const forwardedStream = (key: string | undefined, start: Effect.Effect<TurnStream, TurnError>) =>
    Effect.flatMap(
      forwarded(key, start),
      (turn) =>
        Effect.suspend(() => {
          forwarding++
          return Effect.as(
            Effect.forkIn(
              Effect.interruptible(
                Effect.ensuring(
                  Effect.raceFirst(Effect.exit(turn.result), Effect.exit(stoppedByShutdown(key))),
                  Effect.sync(() => forwarding--)
                )
              ),
              hostScope
            ),
            turn
          )
        })
    )

  // No turn running or queued. Polled during shutdown only (every 20 ms on the wall clock), so the hot path
  // carries no bookkeeping for it.
  const awaitIdle: Effect.Effect<void> = Effect.flatMap(
    sessions.stats,
    (stats) =>
      running.size === 0 && forwarding === 0 && stats.running === 0 && stats.queued === 0 ?
        Effect.void :
        Effect.zipRight(wallClockSleep(Duration.millis(20)), Effect.suspend(() => awaitIdle))
  )

  const drain = Effect.fn("Turns.drain")(function*(grace: Duration.Duration) {
    yield* Deferred.succeed(draining, undefined)
    if (stopped) return
    const inTime = yield* detached(Effect.raceFirst(
      Effect.as(awaitIdle, true),
      Effect.as(Effect.race(Effect.sleep(grace), wallClockSleep(grace)), false)
    ))
    stopped = true
    yield* Deferred.succeed(stopping, undefined)
    const left = running.values()
    if (inTime || left.length === 0) return
    yield* Effect.logWarning(
      `shutdown grace of ${Duration.format(grace)} elapsed; stopping ${left.length} running turn(s)`
    )
    // Each stopped turn fails with TurnCancelled (shutdown) in its waiters and streams. Waiting for them is
    // bounded: a target that ignores interruption must not hold shutdown open.
    yield* detached(Effect.raceFirst(
      Fiber.interruptAllAs(left, FiberId.none),
      wallClockSleep(Duration.seconds(1))
    ))
  })

  const targetInfo: TargetInfo = {
    name: target.name,
    kind: target.kind,
    ...(target.description === undefined ? {} : { description: target.description }),
    ...(target.skills === undefined ? {} : { skills: target.skills })
  }

  const runPrepared = (
    info: ChannelInfo,
    prepared: Prepared,
    guard?: Effect.Effect<void, TurnError>
  ): Effect.Effect<TurnOutcome, TurnError> => {
    const request = prepared.request
    const turn = runTurn(request, prepared.isolation, prepared.withReply)
    return Effect.flatten(
      submit(
        info,
        request,
        tracked(info, request.session?.isolationKey, guard === undefined ? turn : Effect.zipRight(guard, turn)),
        prepared.inline
      )
    )
  }

  // A target's updates as the turn reads them: all at once when the target has them together (no stream run),
  // else its stream read chunk by chunk; a defect is the agent's failure either way.
  const targetUpdates = (
    turn: Turn,
    onChunk: (chunk: Iterable<AgentResponseUpdate>) => Effect.Effect<void>
  ): Effect.Effect<void, TurnError> => {
    const whole = target.updates
    if (whole !== undefined) {
      return Effect.flatMap(whole(turn).pipe(withRequestContext(turn.context)), onChunk).pipe(
        Effect.catchAllDefect((defect) => Effect.fail(agentDefect(defect)))
      )
    }
    const updates = target.stream(turn).pipe(
      Stream.provideService(RequestContext, turn.context),
      Stream.catchAllCause((cause) => {
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) return Stream.fail(failure.value)
        if (Cause.isInterruptedOnly(cause)) return Stream.failCause(cause)
        return Stream.fail(agentDefect(Cause.squash(cause)))
      })
    )
    return Stream.runForEachChunk(updates, onChunk).pipe(
      Effect.catchAllDefect((defect) => Effect.fail(agentDefect(defect)))
    )
  }

  const streamPrepared = (
    channel: string,
    prepared: Prepared,
    guard?: Effect.Effect<void, TurnError>
  ): Effect.Effect<TurnStream, TurnError> =>
    Effect.flatMap(Mailbox.make<AgentResponseUpdate, TurnError>(), (mailbox) => {
      const info = infoOf(channel)
      const transform = info.streamTransform
      const sessionKey = prepared.request.session?.isolationKey
      // Set before the mailbox ends, so a consumer that saw the end never cancels a turn that is finishing.
      let finished = false
      const acc = new ResponseAccumulator()
      const offer = (chunk: Iterable<AgentResponseUpdate>): Effect.Effect<void> => {
        if (transform === undefined) {
          for (const update of chunk) acc.add(update)
          return mailbox.offerAll(chunk)
        }
        const updates = Array.from(chunk)
        for (const update of updates) acc.add(update)
        return Effect.flatMap(
          Effect.forEach(updates, transform),
          (shaped) => mailbox.offerAll(shaped.flatMap((o) => Option.isSome(o) ? [o.value] : []))
        )
      }
      const body = Effect.flatMap(
        beginTurn(prepared.request, prepared.isolation),
        (turn) =>
          Effect.flatMap(targetUpdates(turn, offer), () => {
            const response = acc.done()
            return finishTurn(prepared.request, turn, response, response)
          })
      )
      const work = tracked(info, sessionKey, guard === undefined ? body : Effect.zipRight(guard, body)).pipe(
        Effect.onExit((exit) => {
          finished = true
          if (Exit.isSuccess(exit)) return mailbox.end
          // Stopped by shutdown: followers get a typed failure to render, not a bare interruption.
          if (stopped && Exit.isInterrupted(exit)) return mailbox.fail(shutdownError(sessionKey))
          return mailbox.failCause(exit.cause)
        })
      )
      // Reads the mailbox chunk by chunk until it ends: no stream run.
      const loop = <E>(f: (chunk: Chunk.Chunk<AgentResponseUpdate>) => Effect.Effect<void, E>) => {
        const next: Effect.Effect<void, TurnError | E> = Effect.flatMap(mailbox.takeAll, ([chunk, done]) => {
          const written = Chunk.isEmpty(chunk) ? Effect.void : f(chunk)
          return done ? written : Effect.zipRight(written, next)
        })
        return next
      }
      return Effect.flatMap(submit(info, prepared.request, work), (result): Effect.Effect<TurnStream> => {
        if (prepared.request.onDisconnect !== "cancel") {
          // `result` only waits for the turn's outcome (a deferred, or the detached fiber's exit): it may be run any
          // number of times, by `updates`' reader and anyone else, with no memo of its own.
          // `updates` is built when read: most readers take `forEachChunk`.
          return Effect.succeed({
            get updates() {
              return Mailbox.toStream(mailbox).pipe(Stream.ensuring(mailbox.shutdown))
            },
            forEachChunk: (f) => Effect.ensuring(loop(f), mailbox.shutdown),
            result
          })
        }
        // `cancel`: the caller is whoever consumes `updates`; abandoning them before the end cancels the turn.
        const key = prepared.request.session?.isolationKey ?? "none"
        return Effect.flatMap(Effect.forkIn(result, hostScope), (waiter) => {
          const abandon = Effect.zipRight(
            mailbox.shutdown,
            Effect.suspend(() => finished ? Effect.void : Fiber.interrupt(waiter))
          )
          return Effect.map(
            Effect.cached(
              Effect.catchAllCause(Fiber.join(waiter), (cause) =>
                Cause.isInterruptedOnly(cause) ?
                  Effect.fail(new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })) :
                  Effect.failCause(cause))
            ),
            (cached) => ({
              updates: Mailbox.toStream(mailbox).pipe(Stream.ensuring(abandon)),
              forEachChunk: (f) => Effect.ensuring(loop(f), abandon),
              result: cached
            })
          )
        })
      })
    })

  /**
   * A streamed turn of an idle session, run in the caller's fiber as the caller reads it (`StreamExtras.inline`):
   * what `runInlineTurn` does for a blocking turn, with the target's updates handed to the reader's function
   * inside the turn (no fork, no mailbox, no wakeup). Only for a target that gives its updates at once (they are
   * in memory: the reader writes them without waiting on its client) and a channel without a stream transform.
   * From here until the turn has ended the caller's fiber is `shielded`: its client leaving cannot stop the turn,
   * nor keep it from starting (the listener interrupts nothing, so the reader does run). The actor is busy from
   * here (later turns queue behind this one); only the turn's own region is interruptible, by shutdown. Anything
   * else (a busy actor, an interruptible caller, shutdown under way) takes `streamPrepared`.
   */
  const streamInline = (
    info: ChannelInfo,
    prepared: Prepared,
    key: string,
    fiber: Fiber.RuntimeFiber<unknown, unknown>,
    flags: RuntimeFlags.RuntimeFlags,
    withReply: ((outcome: TurnOutcome) => Effect.Effect<void>) | undefined
  ): TurnStream | undefined => {
    const whole = target.updates
    if (whole === undefined || info.streamTransform !== undefined || stopped) return undefined
    if (RuntimeFlags.interruption(flags) || prepared.request.onDisconnect === "cancel") return undefined
    // A caller already interrupted (its client left while the request was read) would never read the turn.
    if (ClientShield.stateOf(fiber) !== "interrupts" || isInterrupted(fiber)) return undefined
    // No fiber until the frame starts: the caller writes the body interruptibly, so an `interrupt` policy's
    // interruption landing before the frame would end it without the frame, and the actor would stay busy.
    const entry = sessions.enterInline(key, info.busyPolicy, undefined, prepared.request.session?.fresh === true)
    if (entry === undefined) return undefined
    const request = prepared.request
    const shield = ClientShield.shield(fiber)
    // 0: not started, 1: running, 2: ended (`outcome` set).
    let state = 0
    let outcome: Exit.Exit<TurnOutcome, TurnError> | undefined
    // Another fiber waiting for the outcome while the turn runs (none on the hot path).
    let ended: Deferred.Deferred<TurnOutcome, TurnError> | undefined

    // Runs in the fiber that reads first: the caller's (`current` is `fiber`), unless the caller left the turn to
    // another fiber to await (then that one runs it, and the caller's shield no longer matters).
    const frame = <E>(
      f: ((chunk: Chunk.Chunk<AgentResponseUpdate>) => Effect.Effect<void, E>) | undefined,
      current: Fiber.RuntimeFiber<unknown, unknown>
    ): Effect.Effect<void, TurnError | E> => {
      state = 1
      // Shutdown stopped turns, or the `interrupt` policy cancelled this one, before it began: it ends as a stopped
      // (cancelled) turn does, without running.
      const cancelled = !sessions.attach(entry, current)
      if (stopped || cancelled) {
        const failure = stopped ?
          shutdownError(key) :
          new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })
        if (current === fiber) ClientShield.restore(fiber, shield)
        outcome = Exit.fail(failure)
        state = 2
        if (ended !== undefined) Deferred.unsafeDone(ended, outcome)
        return Now.zipRight(sessions.leave(entry), Effect.fail(failure))
      }
      const context = current.getFiberRef(FiberRef.currentContext)
      const slot = running.add(current)
      const started = performance.now()
      let inTarget = false
      // The first failure of `f`: the turn goes on (its reader may have gone), and it is reported after.
      let failed: Cause.Cause<E> | undefined
      const end = (exit: Exit.Exit<TurnOutcome, TurnError>) => {
        if (current === fiber) ClientShield.restore(fiber, shield)
        if (inTarget) Now.setFiberRef(current, FiberRef.currentContext, context)
        running.remove(slot, current)
        info.duration.update((performance.now() - started) / 1000)
        outcome = exit
        state = 2
        if (ended !== undefined) Deferred.unsafeDone(ended, exit)
      }
      const body: Effect.Effect<TurnOutcome, TurnError> = Now.andThen(
        beginTurn(request, prepared.isolation),
        (turn) => {
          inTarget = true
          Now.setFiberRef(current, FiberRef.currentContext, Context.add(context, RequestContext, turn.context))
          return Effect.flatMap(whole(turn), (updates) => {
            inTarget = false
            Now.setFiberRef(current, FiberRef.currentContext, context)
            const acc = new ResponseAccumulator()
            for (const update of updates) acc.add(update)
            const response = acc.done()
            const finish = () => finishTurn(request, turn, response, response, withReply)
            if (f === undefined || updates.length === 0) return finish()
            return Effect.flatMap(
              Effect.catchAllCause(f(Chunk.unsafeFromArray(updates)), (cause) => {
                failed = cause
                return Effect.void
              }),
              finish
            )
          })
        }
      )
      // Readers read in interruptible regions: the frame's end must run however the turn ends.
      return Effect.uninterruptible(Effect.matchCauseEffect(Effect.interruptible(body), {
        onFailure: (cause) => {
          const failure = inlineFailure(cause, inTarget, key)
          end(Exit.failCause(failure))
          return Now.zipRight(sessions.leave(entry), Effect.failCause(failure))
        },
        onSuccess: (done) => {
          end(Exit.succeed(done))
          return Now.zipRight(sessions.leave(entry), failed === undefined ? Effect.void : Effect.failCause(failed))
        }
      }))
    }

    const result: Effect.Effect<TurnOutcome, TurnError> = Effect.withFiberRuntime((current) => {
      if (state === 2) return outcome!
      if (state === 0) return Effect.zipRight(Effect.catchAll(frame(undefined, current), () => Effect.void), result)
      ended ??= Deferred.unsafeMake<TurnOutcome, TurnError>(FiberId.none)
      return Deferred.await(ended)
    })
    const forEachChunk = <E>(
      f: (chunk: Chunk.Chunk<AgentResponseUpdate>) => Effect.Effect<void, E>
    ): Effect.Effect<void, TurnError | E> =>
      Effect.withFiberRuntime((current) => state === 0 ? frame(f, current) : Effect.asVoid(result))
    return {
      get updates() {
        // Read as a stream (no channel that asks for an inline turn does): the turn runs as it is read.
        return Stream.unwrap(Effect.suspend(() => {
          const chunks: Array<Chunk.Chunk<AgentResponseUpdate>> = []
          return Effect.map(
            forEachChunk((chunk) => Effect.sync(() => void chunks.push(chunk))),
            () => Stream.fromChunks(...chunks)
          )
        }))
      },
      forEachChunk,
      result,
      inline: true
    }
  }

  const resetLocal = (channel: string, isolationKey: string) =>
    Effect.gen(function*() {
      const alias = yield* issueId(`${isolationKey}#`)
      yield* store.setAlias(isolationKey, alias)
      aliases.set(isolationKey, alias)
      yield* Effect.logInfo("session reset").pipe(
        Effect.annotateLogs({ channel, session_sha256: isolationKeyDigest(isolationKey) })
      )
      return alias
    })

  const local: LocalTurns = {
    run: (channel, request, isolation, guard) =>
      runPrepared(infoOf(channel), { request, isolation, inline: false }, guard),
    runStream: (channel, request, isolation, guard) =>
      streamPrepared(channel, { request, isolation, inline: false }, guard),
    resetSession: resetLocal,
    forget: (isolationKey) =>
      Effect.sync(() => {
        const sessionId = aliases.get(isolationKey)
        aliases.delete(isolationKey)
        histories.delete(isolationKey)
        if (sessionId !== undefined) histories.delete(sessionId)
      })
  }

  const contextFor = (channel: string): ChannelContext => {
    const run = (request: ChannelRequest, raw?: unknown, extras?: RunExtras): Effect.Effect<TurnOutcome, TurnError> => {
      const info = infoOf(channel)
      return prepareThen(info, request, raw, (ready, fiber, flags) => {
        const prepared = extras?.withReply === undefined ? ready : { ...ready, withReply: extras.withReply }
        const key = prepared.request.session?.isolationKey
        if (key === undefined) return runPrepared(info, prepared)
        if (router !== undefined) return forwarded(key, router.run(channel, prepared.request, prepared.isolation))
        return prepared.inline && prepared.request.onDisconnect !== "cancel" ?
          runInlineTurn(info, prepared, key, fiber, flags) :
          runPrepared(info, prepared)
      })
    }

    const runStream = (
      request: ChannelRequest,
      raw?: unknown,
      extras?: StreamExtras
    ): Effect.Effect<TurnStream, TurnError> => {
      const info = infoOf(channel)
      return prepareThen(info, request, raw, (prepared, fiber, flags) => {
        const key = prepared.request.session?.isolationKey
        if (router !== undefined && key !== undefined) {
          return forwardedStream(key, router.runStream(channel, prepared.request, prepared.isolation))
        }
        if (extras?.inline === true && key !== undefined) {
          const inline = streamInline(info, prepared, key, fiber, flags, extras.withReply)
          if (inline !== undefined) return Effect.succeed(inline)
        }
        return streamPrepared(channel, prepared)
      })
    }

    const resetSession = (isolationKey: string) =>
      router === undefined ? resetLocal(channel, isolationKey) : router.resetSession(channel, isolationKey)

    // In a cluster another host may have reset the key: read the store, not this host's cache.
    const sessionIdFor = (isolationKey: string) =>
      router === undefined ?
        sessionIdOf(isolationKey) :
        Effect.map(store.getAlias(isolationKey), Option.getOrElse(() => isolationKey))

    // AGENT_HOST_TRACING: each turn (for a stream: its start) is a span, under the request's span. It names the
    // session by a digest of its isolation key: never the key itself, nor any message text.
    const span = (request: ChannelRequest) => {
      const attributes: Record<string, string> = {
        "agent_host.channel": channel,
        "agent_host.operation": request.operation
      }
      const responseId = request.attributes?.responseId
      if (responseId !== undefined) attributes["agent_host.response_id"] = responseId
      const key = request.session?.isolationKey
      if (key !== undefined) attributes["agent_host.isolation_key_sha256"] = isolationKeyDigest(key)
      return { captureStackTrace: false, attributes }
    }
    return {
      channel,
      run: settings.tracing ?
        (request, raw, extras) => Effect.withSpan(run(request, raw, extras), "agent_host.turn", span(request)) :
        run,
      runStream: settings.tracing ?
        (request, raw, extras) => Effect.withSpan(runStream(request, raw, extras), "agent_host.turn", span(request)) :
        runStream,
      resetSession,
      settings,
      state: store,
      conversations,
      sessionIdFor,
      target: targetInfo,
      draining: Deferred.await(draining),
      ...(Option.isSome(linking) ? { linking: linking.value } : {})
    }
  }

  return Turns.of({
    contextFor,
    withIsolation: (isolation) => (effect) => Effect.provideService(effect, CurrentIsolation, isolation),
    historyCache: Effect.sync(() => ({
      sessions: histories.size,
      bytes: histories.bytes,
      maxBytes: settings.historyCacheBytes
    })),
    drain,
    local
  })
})

export const layer: Layer.Layer<
  Turns,
  never,
  Target | Sessions | StateStore | Delivery | Channels | Authorizer | HostConfig
> = Layer.scoped(Turns, make)
