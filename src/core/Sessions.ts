/**
 * Session actors: one per isolation key. Turns for a key run one at a time in arrival order, different keys
 * run in parallel, idle actors are released, and the number of live actors is bounded.
 *
 * An actor is a mailbox (a plain array), the fiber of the turn it is running (none while idle) and a lazily
 * opened scope for per-session resources. Holding no fiber while idle keeps a live actor to a few hundred
 * bytes; the actor's durable state (history, alias) lives in the StateStore, so releasing it loses nothing.
 * A turn runs in the actor's fiber, not the caller's. What a caller that goes away (HTTP client disconnect,
 * i.e. its waiter is interrupted) does to its turn is the submitter's choice (`OnDisconnect`): `continue` (the
 * default) stops waiting and the turn still completes; `cancel` drops the turn if it is still queued and
 * interrupts it if it is running.
 *
 * The mailbox is bounded: at most `maxQueued` turns wait behind the running one; one more fails at once with
 * `MailboxFull` (HTTP 429 with `retry-after`), so a flood of requests on one session cannot pile up.
 */
import type { ConfigError } from "effect"
import {
  Cause,
  Clock,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberId,
  Layer,
  Schedule,
  Scope
} from "effect"
import { MailboxFull, SessionBusy, SessionCapacityExceeded, TurnCancelled } from "../domain/Errors.js"

/** What happens when a turn arrives while the session is running one. */
export type BusyPolicy = "queue" | "reject" | "interrupt"

/**
 * What happens to a turn when its caller goes away (its waiter is interrupted): `continue` runs it to the end
 * anyway; `cancel` drops it before it starts, or interrupts it when it is running.
 */
export type OnDisconnect = "continue" | "cancel"

export const onDisconnectValues: ReadonlyArray<OnDisconnect> = ["continue", "cancel"]

export interface SubmitOptions {
  /** Default `continue`. */
  readonly onDisconnect?: OnDisconnect
  /**
   * Run the turn in the caller's fiber when the actor is idle, instead of forking one for it (a fiber fork and a
   * wakeup are a large part of a short turn). Only for a caller whose fiber nothing but the host interrupts
   * (shutdown, the `interrupt` policy): a caller that goes away must not be able to stop it. Ignored under the
   * `interrupt` policy and `onDisconnect: "cancel"`, which need the turn in a fiber of its own.
   */
  readonly inline?: boolean
  /** The key was just minted for this turn (see `enterInline`'s `transient`). */
  readonly transient?: boolean
}

export interface ActorHandle {
  readonly key: string
  /** The actor's scope, opened on first use and closed when the actor is released. */
  readonly scope: Effect.Effect<Scope.Scope>
}

export interface SessionStats {
  readonly live: number
  readonly running: number
  readonly queued: number
}

export interface SessionsShape {
  /**
   * Enqueues `work` on the key's actor. The outer effect fails at once when the turn cannot be accepted
   * (busy under `reject`, a full mailbox, capacity); the inner effect waits for the turn's outcome.
   * Interrupting the waiter cancels the turn only under `onDisconnect: "cancel"`.
   */
  readonly submit: <A, E>(
    key: string,
    policy: BusyPolicy,
    work: (actor: ActorHandle) => Effect.Effect<A, E>,
    options?: SubmitOptions
  ) => Effect.Effect<
    Effect.Effect<A, E | TurnCancelled>,
    SessionBusy | SessionCapacityExceeded | MailboxFull
  >
  /**
   * The synchronous start of an inline turn (see `SubmitOptions.inline`) for a caller that runs the turn's frame
   * itself: when the key's actor is idle (and the policy is not `interrupt`, and taking the actor evicts nothing),
   * the actor is busy from now on with `fiber` as its running job (shutdown and the `interrupt` policy interrupt
   * that fiber), and the entry is returned; otherwise undefined, and the turn goes through `submit`. Exactly one
   * `leave` must follow, however the turn ends; the caller makes the turn interruptible only in its own region.
   * With no `fiber` (a streamed turn whose frame starts later, when its body is written) nothing is interrupted
   * until `attach` names the fiber: the `interrupt` policy only marks the turn cancelled meanwhile.
   * `transient`: the key was just minted for this turn (a one-shot request's session): a new actor for it is
   * released as soon as it goes idle, unless another turn for the key came meanwhile, instead of being kept for
   * reuse (most such keys never see a second turn; a later one gets a new actor).
   */
  readonly enterInline: (
    key: string,
    policy: BusyPolicy,
    fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined,
    transient?: boolean
  ) => InlineEntry | undefined
  /**
   * Names the fiber that runs an inline turn entered without one; false when the turn was cancelled meanwhile
   * (the `interrupt` policy): the caller then ends it without running it, and leaves.
   */
  readonly attach: (entry: InlineEntry, fiber: Fiber.RuntimeFiber<unknown, unknown>) => boolean
  /** Ends an inline turn: the actor starts its next queued turn, or goes idle. */
  readonly leave: (entry: InlineEntry) => Effect.Effect<void>
  /** Releases every idle actor whose last turn ended at least the idle time ago. */
  readonly sweep: Effect.Effect<number>
  readonly stats: Effect.Effect<SessionStats>
  readonly isLive: (key: string) => Effect.Effect<boolean>
}

/** An inline turn's hold on its actor (`enterInline`), handed back to `leave`. */
export interface InlineEntry {
  readonly key: string
}

export class Sessions extends Context.Tag("effect-agent-host/Sessions")<Sessions, SessionsShape>() {}

export interface Options {
  /** How long an actor with no turn stays live (default 15 minutes). */
  readonly idleTimeout?: Duration.DurationInput
  /** The most live actors; idle ones are evicted first (default 100 000). */
  readonly maxActors?: number
  /**
   * The most idle actors kept for reuse (default 10 000). When an actor goes idle above it, the least recently
   * used idle actors are released at once rather than after the idle timeout: they hold nothing the store does
   * not, and each costs memory (issue 13 point 16: a flood of one-shot sessions kept ~1 KB each for 15 minutes).
   */
  readonly maxIdle?: number
  /** The most turns that may wait behind a session's running turn (default 16). */
  readonly maxQueued?: number
  /** What a caller refused with `MailboxFull` is told to wait before retrying (default 1 second). */
  readonly retryAfter?: Duration.DurationInput
}

export const defaultMaxQueued = 16
export const defaultMaxIdle = 10_000

// How many actors one trim looks at: keeps the work per finished turn constant when many actors are busy.
const trimScan = 64

interface Job {
  readonly run: Effect.Effect<void>
  readonly cancel: Effect.Effect<void>
  fiber: Fiber.RuntimeFiber<void> | undefined
  cancelRequested: boolean
}

interface Actor {
  readonly key: string
  readonly queue: Array<Job>
  /** The job being run; set synchronously when it is dequeued, so busy checks never race the fork. */
  running: Job | undefined
  lastActive: number
  scope: Scope.CloseableScope | undefined
  /** Released as soon as it goes idle (a key minted for one turn that has seen no other). */
  transient: boolean
  readonly handle: ActorHandle
}

export const make = (options: Options = {}): Effect.Effect<SessionsShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const idleMillis = Duration.toMillis(options.idleTimeout ?? Duration.minutes(15))
    const maxActors = options.maxActors ?? 100_000
    const maxQueued = Math.max(0, options.maxQueued ?? defaultMaxQueued)
    const retryAfter = Duration.decode(options.retryAfter ?? Duration.seconds(1))
    const maxIdle = Math.max(0, options.maxIdle ?? defaultMaxIdle)
    const layerScope = yield* Effect.scope
    // Read synchronously on the hot path (a TestClock in tests); taken once here.
    const clock = yield* Effect.clock
    const actors = new Map<string, Actor>()
    // Turns run as daemon fibers (forking into the layer scope registers a finalizer per turn); the layer's
    // finalizer interrupts the ones still running, which is all that scope would have done.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const fibers: Array<Fiber.RuntimeFiber<void>> = []
        for (const actor of actors.values()) if (actor.running?.fiber !== undefined) fibers.push(actor.running.fiber)
        return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
      })
    )

    const closeScope = (actor: Actor): Effect.Effect<void> => {
      const scope = actor.scope
      actor.scope = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    }

    const release = (actor: Actor): Effect.Effect<void> => {
      actors.delete(actor.key)
      return closeScope(actor)
    }

    const isIdle = (actor: Actor) => actor.running === undefined && actor.queue.length === 0

    const newActor = (key: string): Actor => {
      const actor: Actor = {
        key,
        queue: [],
        running: undefined,
        lastActive: 0,
        scope: undefined,
        transient: false,
        handle: {
          key,
          scope: Effect.suspend(() => {
            if (actor.scope !== undefined) return Effect.succeed(actor.scope)
            return Effect.map(Scope.fork(layerScope, undefined as never), (scope) => {
              actor.scope = scope
              return scope
            })
          })
        }
      }
      return actor
    }

    // Runs the actor's next job in a fiber of its own, chaining to the one after when it ends. Called when the
    // effect runs: the actor's state is read and changed at once (the common case, no job waiting, is `Effect.void`).
    const startNextNow = (actor: Actor): Effect.Effect<void> => {
      const job = actor.queue.shift()
      actor.running = job
      if (job === undefined) {
        if (actor.transient) {
          if (actors.get(actor.key) === actor) actors.delete(actor.key)
          return actor.scope === undefined ? Effect.void : closeScope(actor)
        }
        actor.lastActive = clock.unsafeCurrentTimeMillis()
        return trimIdle()
      }
      const body = Effect.suspend(() => job.cancelRequested ? job.cancel : job.run)
      return Effect.map(
        Effect.forkDaemon(Effect.interruptible(body).pipe(Effect.ensuring(startNext(actor)))),
        (fiber) => {
          job.fiber = fiber
        }
      )
    }
    const startNext = (actor: Actor): Effect.Effect<void> => Effect.suspend(() => startNextNow(actor))

    // Above `maxIdle` live actors, releases the least recently used idle ones (map order), looking at a bounded
    // number of actors; the sweeper still releases the rest when they time out. Called when the effect runs: the
    // victims leave the map at once, and only those that opened a scope cost an effect (the common one-shot
    // session opened none, so a finished turn costs no `forEach`).
    const trimIdle = (): Effect.Effect<void> => {
      if (actors.size <= maxIdle) return Effect.void
      let scoped: Array<Actor> | undefined
      let looked = 0
      for (const actor of actors.values()) {
        if (actors.size <= maxIdle || looked++ >= trimScan) break
        if (!isIdle(actor)) continue
        actors.delete(actor.key)
        if (actor.scope !== undefined) (scoped ??= []).push(actor)
      }
      return scoped === undefined ? Effect.void : Effect.forEach(scoped, closeScope, { discard: true })
    }

    const acquire = (
      key: string,
      now: number,
      evicted: Array<Actor>,
      transient: boolean
    ): Actor | SessionCapacityExceeded => {
      const existing = actors.get(key)
      if (existing !== undefined) {
        // Re-insert so map order is least-recently-used first.
        actors.delete(key)
        actors.set(key, existing)
        existing.transient = false
        return existing
      }
      if (actors.size >= maxActors) {
        let victim: Actor | undefined
        for (const actor of actors.values()) {
          if (isIdle(actor)) {
            victim = actor
            break
          }
        }
        if (victim === undefined) {
          return new SessionCapacityExceeded({
            limit: maxActors,
            message: `all ${maxActors} sessions are busy; retry shortly`
          })
        }
        actors.delete(victim.key)
        evicted.push(victim)
      }
      const actor = newActor(key)
      actor.lastActive = now
      actor.transient = transient
      actors.set(key, actor)
      return actor
    }

    // Cancels a job whose caller went away: a queued one is dropped before it starts, a running one interrupted.
    const abandon = (actor: Actor, job: Job): Effect.Effect<void> =>
      Effect.suspend(() => {
        const at = actor.queue.indexOf(job)
        if (at !== -1) {
          actor.queue.splice(at, 1)
          return job.cancel
        }
        if (actor.running !== job) return Effect.void
        job.cancelRequested = true
        return job.fiber === undefined ? Effect.void : Effect.asVoid(job.fiber.interruptAsFork(FiberId.none))
      })

    // The idle actor's turn, in the caller's fiber: the actor is busy from now on (later turns queue behind it), the
    // turn is interruptible only in its own region (by shutdown or the `interrupt` policy, which find this fiber as
    // the job's), and the next queued turn starts when it ends, however it ends.
    const runInline = <A, E>(
      actor: Actor,
      work: (actor: ActorHandle) => Effect.Effect<A, E>,
      cancelled: () => TurnCancelled
    ): Effect.Effect<A, E | TurnCancelled> => {
      const job: Job = { run: Effect.void, cancel: Effect.void, fiber: undefined, cancelRequested: false }
      actor.running = job
      return Effect.uninterruptible(Effect.withFiberRuntime<A, E | TurnCancelled>((fiber) => {
        job.fiber = fiber as unknown as Fiber.RuntimeFiber<void>
        return Effect.matchCauseEffect(Effect.interruptible(work(actor.handle)), {
          onFailure: (cause): Effect.Effect<A, E | TurnCancelled> =>
            Effect.flatMap(
              startNext(actor),
              (): Effect.Effect<A, E | TurnCancelled> =>
                Cause.isInterruptedOnly(cause) ? Effect.fail(cancelled()) : Effect.failCause(cause)
            ),
          onSuccess: (value) => Effect.as(startNext(actor), value)
        })
      }))
    }

    const enterInline = (
      key: string,
      policy: BusyPolicy,
      fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined,
      transient = false
    ): InlineEntry | undefined => {
      if (policy === "interrupt") return undefined
      let actor = actors.get(key)
      if (actor === undefined) {
        // A new actor that would evict another (or find no room) goes through `submit`, which handles both.
        if (actors.size >= maxActors) return undefined
        actor = newActor(key)
        actor.lastActive = clock.unsafeCurrentTimeMillis()
        actor.transient = transient
      } else {
        if (actor.running !== undefined || actor.queue.length > 0) return undefined
        // Re-insert so map order is least-recently-used first.
        actors.delete(key)
        actor.transient = false
      }
      actors.set(key, actor)
      actor.running = {
        run: Effect.void,
        cancel: Effect.void,
        fiber: fiber as Fiber.RuntimeFiber<void> | undefined,
        cancelRequested: false
      }
      return actor
    }

    const attach = (entry: InlineEntry, fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean => {
      const job = (entry as Actor).running
      if (job === undefined) return false
      job.fiber = fiber as Fiber.RuntimeFiber<void>
      return !job.cancelRequested
    }

    const leave = (entry: InlineEntry): Effect.Effect<void> => startNextNow(entry as Actor)

    const submit = <A, E>(
      key: string,
      policy: BusyPolicy,
      work: (actor: ActorHandle) => Effect.Effect<A, E>,
      submitOptions?: SubmitOptions
    ): Effect.Effect<Effect.Effect<A, E | TurnCancelled>, SessionBusy | SessionCapacityExceeded | MailboxFull> =>
      Effect.suspend((): Effect.Effect<
        Effect.Effect<A, E | TurnCancelled>,
        SessionBusy | SessionCapacityExceeded | MailboxFull
      > => {
        const now = clock.unsafeCurrentTimeMillis()
        const evicted: Array<Actor> = []
        const actor = acquire(key, now, evicted, submitOptions?.transient === true)
        if (actor instanceof SessionCapacityExceeded) return Effect.fail(actor)
        const busy = actor.running !== undefined || actor.queue.length > 0
        if (busy && policy === "reject") {
          return Effect.fail(
            new SessionBusy({
              key,
              message: `session ${key} is answering another message; send again when it has finished`
            })
          )
        }
        // Turns waiting behind the running one (a first job not yet started counts as running).
        const waiting = actor.running === undefined ? Math.max(0, actor.queue.length - 1) : actor.queue.length
        if (busy && policy !== "interrupt" && waiting >= maxQueued) {
          return Effect.fail(
            new MailboxFull({
              key,
              limit: maxQueued,
              retryAfter,
              message: `session ${key} already has ${waiting} message(s) waiting (the limit is ${maxQueued}); ` +
                `send again when it has caught up`
            })
          )
        }
        // Built only when needed: an error captures a stack trace, too costly for every turn.
        const cancelled = () => new TurnCancelled({ key, message: `the turn in session ${key} was cancelled` })
        if (
          !busy && submitOptions?.inline === true && policy !== "interrupt" && submitOptions.onDisconnect !== "cancel"
        ) {
          const inline = runInline(actor, work, cancelled)
          return Effect.succeed(
            evicted.length === 0
              ? inline
              : Effect.zipRight(Effect.forEach(evicted, closeScope, { discard: true }), inline)
          )
        }
        const deferred = Deferred.unsafeMake<A, E | TurnCancelled>(FiberId.none)
        const job: Job = {
          run: work(actor.handle).pipe(
            Effect.exit,
            Effect.flatMap((exit) => Deferred.done(deferred, exit)),
            Effect.onInterrupt(() => Deferred.fail(deferred, cancelled())),
            Effect.asVoid
          ),
          cancel: Effect.suspend(() => Effect.asVoid(Deferred.fail(deferred, cancelled()))),
          fiber: undefined,
          cancelRequested: false
        }
        let before: Effect.Effect<void> = evicted.length === 0 ?
          Effect.void :
          Effect.forEach(evicted, closeScope, { discard: true })
        if (busy && policy === "interrupt") {
          const dropped = actor.queue.splice(0, actor.queue.length)
          const running = actor.running
          let stop: Effect.Effect<void> = Effect.void
          if (running !== undefined) {
            running.cancelRequested = true
            if (running.fiber !== undefined) stop = running.fiber.interruptAsFork(FiberId.none)
          }
          before = Effect.zipRight(before, Effect.zipRight(Effect.forEach(dropped, (j) => j.cancel), stop))
        }
        actor.queue.push(job)
        const start = actor.running === undefined && actor.queue.length === 1 ? startNext(actor) : Effect.void
        const wait = submitOptions?.onDisconnect === "cancel" ?
          Effect.onInterrupt(Deferred.await(deferred), () => abandon(actor, job)) :
          Deferred.await(deferred)
        return Effect.as(Effect.zipRight(before, start), wait)
      })

    const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.suspend(() => {
        const expired: Array<Actor> = []
        for (const actor of actors.values()) {
          if (isIdle(actor) && now - actor.lastActive >= idleMillis) expired.push(actor)
        }
        return Effect.as(Effect.forEach(expired, release, { discard: true }), expired.length)
      }))

    const sweepEvery = Duration.millis(Math.max(10, Math.min(idleMillis / 4, 60_000)))
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(sweepEvery)))

    return Sessions.of({
      submit,
      enterInline,
      attach,
      leave,
      sweep,
      stats: Effect.sync(() => {
        let running = 0
        let queued = 0
        for (const actor of actors.values()) {
          if (actor.running !== undefined) running++
          queued += actor.queue.length
        }
        return { live: actors.size, running, queued }
      }),
      isLive: (key) => Effect.sync(() => actors.has(key))
    })
  })

export const layer = (options: Options = {}): Layer.Layer<Sessions> => Layer.scoped(Sessions, make(options))

/** The sessions' settings from the environment. */
export const config = Config.all({
  idleTimeout: Config.duration("AGENT_HOST_SESSION_IDLE_TIMEOUT").pipe(Config.withDefault(Duration.minutes(15))),
  maxActors: Config.integer("AGENT_HOST_MAX_SESSIONS").pipe(Config.withDefault(100_000)),
  maxIdle: Config.integer("AGENT_HOST_MAX_IDLE_SESSIONS").pipe(
    Config.validate({ message: "must be 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(defaultMaxIdle)
  ),
  maxQueued: Config.integer("AGENT_HOST_SESSION_QUEUE").pipe(
    Config.validate({ message: "must be 0 or more", validation: (n) => n >= 0 }),
    Config.withDefault(defaultMaxQueued)
  )
})

export const layerConfig: Layer.Layer<Sessions, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(config, (options) => layer(options))
)
