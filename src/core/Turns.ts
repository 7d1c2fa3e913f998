/**
 * Running turns: the implementation behind `ChannelContext`. A turn is validated, authorized, then run by the
 * session actor of its isolation key. Inside the actor the user's input is appended to the session's history
 * before the target runs (an interrupted turn keeps what the user said), and the reply, annotated with the
 * delivery decision, when the turn completes; so history is written in turn order.
 *
 * Shutdown (`drain`): in-flight turns, running or queued, get a grace period; then every turn still running is
 * interrupted and fails with `TurnCancelled` (`reason: "shutdown"`), which each channel renders through its
 * usual error path (terminal stream event, SSE error frame, 503).
 */
import {
  Cause,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberId,
  Layer,
  Mailbox,
  Metric,
  Option,
  Stream
} from "effect"
import { deniedCounterFor } from "../auth/Authorization.js"
import { Authorizer } from "../auth/Authorizer.js"
import { annotate, Delivery, refusedTargets, TargetGrant } from "../delivery/Delivery.js"
import type { ChannelRequest, HostedRunResult } from "../domain/ChannelRequest.js"
import type { TurnError } from "../domain/Errors.js"
import { AccessDenied, AgentError, InvalidIsolationKey, InvalidRequest, TurnCancelled } from "../domain/Errors.js"
import { isolationKeyProblem, issueId } from "../domain/Ids.js"
import type { AgentResponseUpdate, Message } from "../domain/Message.js"
import { ResponseAccumulator } from "../domain/Message.js"
import type { Bytes } from "../domain/Size.js"
import * as Size from "../domain/Size.js"
import { BoundedCache } from "../internal/BoundedCache.js"
import { StateStore } from "../state/StateStore.js"
import type { ChannelContext, TurnOutcome, TurnStream } from "./Channel.js"
import { Channels } from "./Channels.js"
import { HostConfig } from "./HostConfig.js"
import type { IsolationKeys, RequestContextValue } from "./RequestContext.js"
import { noIsolationKeys, RequestContext } from "./RequestContext.js"
import { Sessions } from "./Sessions.js"
import type { Turn } from "./Target.js"
import { Target } from "./Target.js"

export interface TurnsShape {
  /** The context for one channel. */
  readonly contextFor: (channel: string) => ChannelContext
  /** Runs a turn with request-scoped isolation keys (from trusted headers). */
  readonly withIsolation: (isolation: IsolationKeys) => <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /**
   * Shutdown: tells channels the host is draining (`ChannelContext.draining`), waits until no turn is running or
   * queued, at most `grace`, then interrupts every turn still running: each fails with `TurnCancelled`
   * (`reason: "shutdown"`), and a turn submitted afterwards fails with it at once. Idempotent.
   */
  readonly drain: (grace: Duration.Duration) => Effect.Effect<void>
  /** What the cache of recent histories holds now (bounded by `historyCacheBytes`). */
  readonly historyCache: Effect.Effect<HistoryCacheStats>
}

export interface HistoryCacheStats {
  readonly sessions: number
  readonly bytes: Bytes
  readonly maxBytes: Bytes
}

export class Turns extends Context.Tag("effect-agent-host/Turns")<Turns, TurnsShape>() {}

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
 * Sleeps on the wall clock. Shutdown waits race this against the Effect clock: a TestClock nobody advances must
 * not hold shutdown open, and a test can still end the grace early with `TestClock.adjust`.
 */
const wallClockSleep = (duration: Duration.Duration): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), Duration.toMillis(duration))
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Runs a wait of shutdown in a fiber of its own. Shutdown runs in finalizers, often of the fiber being
 * interrupted (SIGTERM interrupts the main fiber): an interruptible wait there would end at once, and an
 * uninterruptible race could not stop its loser. The own fiber is interruptible and not interrupted.
 */
const detached = <A>(wait: Effect.Effect<A>): Effect.Effect<A> =>
  Effect.flatMap(Effect.forkDaemon(Effect.interruptible(wait)), Fiber.join)

export const make = Effect.gen(function*() {
  const target = yield* Target
  const sessions = yield* Sessions
  const store = yield* StateStore
  const delivery = yield* Delivery
  const channels = yield* Channels
  const authorizer = yield* Authorizer
  const settings = yield* HostConfig
  const hostScope = yield* Effect.scope
  // Shutdown state: `draining` once the host stops accepting, `stopped` once the grace is over; `running` holds
  // the fibers of turns whose work is under way, so the grace can end early and the rest can be interrupted.
  const draining = yield* Deferred.make<void>()
  let stopped = false
  const running = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  // Read-through caches of session ids and recent histories: this process is the state's only writer (the
  // state directory has one owner), so they never go stale; they save two statements per turn.
  const aliases = new BoundedCache<string, string>(100_000)
  // Bounded by an estimate of the heap the histories hold, too: a few sessions of huge messages must not grow the
  // process without limit. A message is measured once; history arrays share their messages.
  const messageSizes = new WeakMap<Message, Bytes>()
  const messageSize = (message: Message): Bytes => {
    const known = messageSizes.get(message)
    if (known !== undefined) return known
    const size = Size.estimate(message)
    messageSizes.set(message, size)
    return size
  }
  const historySize = (messages: ReadonlyArray<Message>): Bytes => {
    let total = Size.bytes(64 + 8 * messages.length)
    for (const message of messages) total = Size.add(total, messageSize(message))
    return total
  }
  const histories = new BoundedCache<string, ReadonlyArray<Message>>(10_000, {
    maxBytes: settings.historyCacheBytes,
    sizeOf: historySize
  })
  // A turn sees the most recent `historyLimit` messages: long conversations cost the same per turn as short ones.
  const historyLimit = Math.max(0, settings.historyLimit)
  const recent = (messages: ReadonlyArray<Message>) =>
    messages.length <= historyLimit ? messages : messages.slice(messages.length - historyLimit)

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
    yield* Effect.logInfo("response target refused").pipe(
      Effect.annotateLogs({ channel: prepared.channel, refused: shown.join(",") })
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

  const prepare = Effect.fnUntraced(function*(channel: string, request: ChannelRequest, raw: unknown) {
    const hook = channels.unsafeGet(channel)?.contribution.hooks?.run
    let prepared = hook === undefined ? request : yield* hook(request, raw)
    const key = prepared.session?.isolationKey
    if (key !== undefined) {
      const problem = isolationKeyProblem(key)
      if (problem !== undefined) {
        return yield* new InvalidIsolationKey({ key: key.slice(0, 300), message: `isolation key ${problem}` })
      }
    }
    if (prepared.input.length === 0) {
      return yield* new InvalidRequest({ message: "the request has no input messages" })
    }
    yield* delivery.admit(prepared)
    prepared = yield* authorizer.authorize(prepared)
    yield* checkTarget(request, prepared)
    const isolation = Option.getOrElse(yield* Effect.serviceOption(CurrentIsolation), () => noIsolationKeys)
    yield* Effect.logInfo("channel request").pipe(
      Effect.annotateLogs({
        channel: prepared.channel,
        operation: prepared.operation,
        stream: prepared.stream,
        session: prepared.session?.isolationKey ?? "none"
      })
    )
    return { request: prepared, isolation }
  })

  const beginTurn = Effect.fnUntraced(function*(request: ChannelRequest, isolation: IsolationKeys) {
    const key = request.session?.isolationKey
    const sessionId = key === undefined ? undefined : yield* sessionIdOf(key)
    const history = sessionId === undefined ? [] : yield* historyOf(sessionId)
    const context: RequestContextValue = {
      channel: request.channel,
      operation: request.operation,
      sessionKey: key,
      isolation,
      responseId: request.attributes?.responseId,
      previousResponseId: request.attributes?.previousResponseId,
      identity: request.identity
    }
    const turn: Turn = { input: stamp(request), history, sessionId, options: request.options ?? {}, context }
    // The user's input is stored before the target runs, so a turn cut short (shutdown, crash) keeps it. The
    // turn sees the history from before its input: its input reaches it once, as `input`.
    if (sessionId !== undefined && turn.input.length > 0) {
      yield* store.appendHistory(sessionId, turn.input)
      histories.set(sessionId, recent([...history, ...turn.input]))
    }
    return turn
  })

  const finishTurn = Effect.fnUntraced(function*(
    request: ChannelRequest,
    turn: Turn,
    response: HostedRunResult["response"],
    result: unknown
  ) {
    const plan = yield* delivery.resolve(request)
    const annotated = annotate(response, request, plan)
    if (turn.sessionId !== undefined) {
      yield* store.appendHistory(turn.sessionId, annotated.messages)
      histories.set(turn.sessionId, recent([...turn.history, ...turn.input, ...annotated.messages]))
    }
    const hosted: HostedRunResult = {
      result: result === response ? annotated : result,
      response: annotated,
      session: request.session,
      sessionId: turn.sessionId
    }
    // Delivered here, in the turn: pushes are scheduled and the identity recorded whether or not the caller is
    // still there to render the originating copy.
    const originating = yield* delivery.deliver(request, hosted, plan)
    const outcome: TurnOutcome = { result: hosted, originating }
    return outcome
  })

  const runTurn = (request: ChannelRequest, isolation: IsolationKeys) =>
    Effect.gen(function*() {
      const turn = yield* beginTurn(request, isolation)
      const out = yield* target.run(turn).pipe(
        Effect.provideService(RequestContext, turn.context),
        Effect.catchAllDefect((defect) => Effect.fail(agentDefect(defect)))
      )
      return yield* finishTurn(request, turn, out.response, out.result)
    })

  // A turn's work as it runs (in the actor, or detached): refused once shutdown has stopped turns, tracked while
  // it runs so shutdown can wait for it and, after the grace, interrupt it.
  const tracked = <A>(key: string | undefined, work: Effect.Effect<A, TurnError>): Effect.Effect<A, TurnError> =>
    Effect.withFiberRuntime<A, TurnError>((fiber) => {
      if (stopped) return Effect.fail(shutdownError(key))
      running.add(fiber)
      return Effect.ensuring(work, Effect.sync(() => running.delete(fiber)))
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
  const submit = <A>(
    channel: string,
    request: ChannelRequest,
    work: Effect.Effect<A, TurnError>
  ): Effect.Effect<Effect.Effect<A, TurnError>, TurnError> => {
    const key = request.session?.isolationKey
    const cancel = request.onDisconnect === "cancel"
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
    const policy = channels.unsafeGet(channel)?.contribution.busyPolicy ?? "queue"
    return Effect.map(
      cancel ?
        Effect.map(sessions.submit(key, policy, () => work, { onDisconnect: "cancel" }), Effect.interruptible) :
        sessions.submit(key, policy, () => work),
      explain(key)
    )
  }

  // No turn running or queued. Polled during shutdown only (every 20 ms on the wall clock), so the hot path
  // carries no bookkeeping for it.
  const awaitIdle: Effect.Effect<void> = Effect.flatMap(
    sessions.stats,
    (stats) =>
      running.size === 0 && stats.running === 0 && stats.queued === 0 ?
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
    const left = [...running]
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

  const contextFor = (channel: string): ChannelContext => {
    const run = (request: ChannelRequest, raw?: unknown): Effect.Effect<TurnOutcome, TurnError> =>
      Effect.flatMap(
        prepare(channel, request, raw),
        ({ isolation, request }) =>
          Effect.flatten(
            submit(channel, request, tracked(request.session?.isolationKey, runTurn(request, isolation)))
          )
      )

    const runStream = (request: ChannelRequest, raw?: unknown): Effect.Effect<TurnStream, TurnError> =>
      Effect.gen(function*() {
        const prepared = yield* prepare(channel, request, raw)
        const transform = channels.unsafeGet(channel)?.contribution.hooks?.streamTransform
        const mailbox = yield* Mailbox.make<AgentResponseUpdate, TurnError>()
        const sessionKey = prepared.request.session?.isolationKey
        // Set before the mailbox ends, so a consumer that saw the end never cancels a turn that is finishing.
        let finished = false
        const work = tracked(
          sessionKey,
          Effect.gen(function*() {
            const turn = yield* beginTurn(prepared.request, prepared.isolation)
            const acc = new ResponseAccumulator()
            const updates = target.stream(turn).pipe(
              Stream.provideService(RequestContext, turn.context),
              Stream.catchAllCause((cause) => {
                const failure = Cause.failureOption(cause)
                if (Option.isSome(failure)) return Stream.fail(failure.value)
                if (Cause.isInterruptedOnly(cause)) return Stream.failCause(cause)
                return Stream.fail(agentDefect(Cause.squash(cause)))
              })
            )
            yield* Stream.runForEachChunk(updates, (chunk) =>
              Effect.suspend(() => {
                for (const update of chunk) acc.add(update)
                if (transform === undefined) return mailbox.offerAll(chunk)
                return Effect.flatMap(
                  Effect.forEach(chunk, transform),
                  (shaped) => mailbox.offerAll(shaped.flatMap((o) => Option.isSome(o) ? [o.value] : []))
                )
              })).pipe(Effect.catchAllDefect((defect) => Effect.fail(agentDefect(defect))))
            const response = acc.done()
            return yield* finishTurn(prepared.request, turn, response, response)
          })
        ).pipe(
          Effect.onExit((exit) => {
            finished = true
            if (Exit.isSuccess(exit)) return mailbox.end
            // Stopped by shutdown: followers get a typed failure to render, not a bare interruption.
            if (stopped && Exit.isInterrupted(exit)) return mailbox.fail(shutdownError(sessionKey))
            return mailbox.failCause(exit.cause)
          })
        )
        const result = yield* submit(channel, prepared.request, work)
        if (prepared.request.onDisconnect !== "cancel") {
          // The turn's outcome is memoised so `updates` and `result` may both be consumed.
          const cached = yield* Effect.cached(result)
          const updates = Mailbox.toStream(mailbox).pipe(Stream.ensuring(mailbox.shutdown))
          return { updates, result: cached }
        }
        // `cancel`: the caller is whoever consumes `updates`; abandoning them before the end cancels the turn.
        const key = prepared.request.session?.isolationKey ?? "none"
        const waiter = yield* Effect.forkIn(result, hostScope)
        const cached = yield* Effect.cached(
          Effect.catchAllCause(Fiber.join(waiter), (cause) =>
            Cause.isInterruptedOnly(cause) ?
              Effect.fail(new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })) :
              Effect.failCause(cause))
        )
        const updates = Mailbox.toStream(mailbox).pipe(
          Stream.ensuring(
            Effect.zipRight(mailbox.shutdown, Effect.suspend(() => finished ? Effect.void : Fiber.interrupt(waiter)))
          )
        )
        return { updates, result: cached }
      })

    const resetSession = (isolationKey: string) =>
      Effect.gen(function*() {
        const alias = yield* issueId(`${isolationKey}#`)
        yield* store.setAlias(isolationKey, alias)
        aliases.set(isolationKey, alias)
        yield* Effect.logInfo("session reset").pipe(Effect.annotateLogs({ channel, session: isolationKey }))
        return alias
      })

    const sessionIdFor = (isolationKey: string) => sessionIdOf(isolationKey)

    return {
      channel,
      run,
      runStream,
      resetSession,
      settings,
      state: store,
      sessionIdFor,
      draining: Deferred.await(draining)
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
    drain
  })
})

export const layer: Layer.Layer<
  Turns,
  never,
  Target | Sessions | StateStore | Delivery | Channels | Authorizer | HostConfig
> = Layer.scoped(Turns, make)
