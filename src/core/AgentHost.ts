/**
 * The host: builds every channel, mounts their routes with `GET /readiness` (every channel and its state) and
 * `GET /liveness` on one HTTP server, runs channel startups in order, and shuts down in order: stop accepting
 * (readiness and new requests answer 503), give in-flight turns the grace period (`AGENT_HOST_SHUTDOWN_GRACE`),
 * stop the rest (each channel ends its streams with a terminal event), wait for the open responses to finish,
 * then close every channel's scope even when some fail.
 *
 * A failed startup does not stop the host: the channel is marked unready (`GET /readiness` answers 503 naming
 * it and why) while the other channels serve, and its startup is retried in the background with capped
 * exponential backoff (`startupRetry`), each failure logged with its reason, until it succeeds. A failure marked
 * `retryable: false` (a misconfiguration that cannot succeed) is logged as an error and not retried: the channel
 * stays unready until the configuration is fixed and the host restarted.
 */
import { HttpServerResponse } from "@effect/platform"
import type { MetricHook } from "effect"
import { Cause } from "effect"
import { Context, Duration, Effect, Exit, Layer, Metric, MetricKey, MetricLabel, Option, Schedule, Scope } from "effect"
import * as Http from "node:http"
import { Authorizer } from "../auth/Authorizer.js"
import { IdentityLinker } from "../auth/IdentityLinker.js"
import * as Delivery from "../delivery/Delivery.js"
import { ChannelStartupError } from "../domain/Errors.js"
import { HostConfigurationError } from "../domain/Errors.js"
import { isolationKeyProblem } from "../domain/Ids.js"
import { onWallClock } from "../domain/Time.js"
import { makeMatcher } from "../http/ApiKeys.js"
import { errorJson, json, shuttingDownHeaders } from "../http/HttpBody.js"
import type { IncomingRequest } from "../http/IncomingRequest.js"
import * as NodeHandler from "../http/NodeHandler.js"
import { hostCheck, isJsonContentType } from "../http/RequestGuards.js"
import { joinPath, Router } from "../http/Router.js"
import * as Upgrade from "../http/Upgrade.js"
import { StateHealth } from "../state/StateHealth.js"
import type { Channel, ChannelContribution, RouteInput, UpgradeRoute } from "./Channel.js"
import * as Channels from "./Channels.js"
import { HostConfig } from "./HostConfig.js"
import type { IsolationKeys } from "./RequestContext.js"
import { noIsolationKeys } from "./RequestContext.js"
import { Target } from "./Target.js"
import * as Turns from "./Turns.js"

export const ISOLATION_HEADER_USER = "x-agent-user-isolation-key"
export const ISOLATION_HEADER_CHAT = "x-agent-chat-isolation-key"

export interface MountedChannel {
  readonly name: string
  readonly path: string
  readonly routes: ReadonlyArray<string>
}

export interface AgentHostShape {
  /** Where the server listens; port is the real one when 0 was asked for. */
  readonly address: { readonly host: string; readonly port: number }
  readonly url: string
  readonly channels: ReadonlyArray<MountedChannel>
  /** The whole app as a `node:http` request listener, for embedding in a server of your own. */
  readonly handler: (request: Http.IncomingMessage, response: Http.ServerResponse) => void
  /** The WebSocket endpoints as a `node:http` `upgrade` listener, for the same server. */
  readonly upgrade: Upgrade.UpgradeListener
}

export class AgentHost extends Context.Tag("effect-agent-host/AgentHost")<AgentHost, AgentHostShape>() {}

export interface Options<E, R> {
  readonly channels: ReadonlyArray<Channel<E, R>>
  /** Listen on the configured host/port (default). False builds the app without a server (use `handler`). */
  readonly listen?: boolean
}

const liveness = json({ status: "alive" })
const drainingReadiness = json({ status: "draining" }, 503, shuttingDownHeaders)
const refused = json(
  { error: { message: "the server is shutting down; retry shortly", type: "shutting_down" } },
  503,
  shuttingDownHeaders
)

// How long shutdown waits, after the grace, for open responses to write their terminal events and finish.
const closeMargin = Duration.seconds(2)
// How often shutdown closes the connections that went idle.
const pollIdle = Duration.millis(20)

/** The first retry of a failed channel startup waits this long; each next one twice as long, up to the cap. */
export const startupRetryBase: Duration.Duration = Duration.seconds(1)
/** The longest wait between two startup attempts of a channel. */
export const startupRetryCap: Duration.Duration = Duration.minutes(1)

/**
 * When a failed channel startup is tried again: exponential from `startupRetryBase`, capped at
 * `startupRetryCap`, for as long as the failure is retryable.
 */
export const startupRetry: Schedule.Schedule<unknown, ChannelStartupError> = Schedule.exponential(startupRetryBase)
  .pipe(
    Schedule.union(Schedule.spaced(startupRetryCap)),
    Schedule.whileInput((error: ChannelStartupError) => error.retryable !== false)
  )

const requestsTotalName = "agent_host_http_requests_total"
const requestsTotalOptions = {
  description: "HTTP requests answered, by channel (host: answered before any route ran) and status",
  incremental: true
} as const

/** HTTP requests answered, by `channel` and `status` (499: the client left before an answer). */
export const requestsTotal = Metric.counter(requestsTotalName, requestsTotalOptions)

/**
 * The registry's hook of `requestsTotal` for one channel and status, looked up once: counting a request is then a
 * plain call. Bounded: channels times the statuses the host answers with.
 */
const requestCounter = () => {
  const hooks = new Map<string, MetricHook.MetricHook.Counter<number>>()
  return (channel: string, status: number): void => {
    const key = `${status} ${channel}`
    let hook = hooks.get(key)
    if (hook === undefined) {
      hook = Metric.globalMetricRegistry.get(
        MetricKey.taggedWithLabels(MetricKey.counter(requestsTotalName, requestsTotalOptions), [
          MetricLabel.make("channel", channel),
          MetricLabel.make("status", String(status))
        ])
      )
      hooks.set(key, hook)
    }
    hook.update(1)
  }
}

/** The state database's readiness (`StateHealth`), for `GET /readiness`. */
interface Readiness {
  readonly ready: boolean
  readonly error?: string
}

/** Why a channel is not ready, for `GET /readiness`. */
interface Unready {
  readonly reason: string
  readonly retrying: boolean
  readonly attempts: number
}

const unsupportedMediaType = errorJson(
  415,
  "unsupported_media_type",
  "this route takes a JSON body: send it with content-type: application/json"
)

const misdirected = (request: IncomingRequest) =>
  errorJson(
    421,
    "misdirected_request",
    `this server does not answer for host ${
      JSON.stringify(String(request.headers.host).slice(0, 100))
    }: use localhost or 127.0.0.1, or add the name to AGENT_HOST_ALLOWED_HOSTS`
  )

const lift = (request: IncomingRequest, trust: boolean): IsolationKeys | string => {
  if (!trust) return noIsolationKeys
  const user = request.headers[ISOLATION_HEADER_USER]
  const chat = request.headers[ISOLATION_HEADER_CHAT]
  if ((user === undefined || user === "") && (chat === undefined || chat === "")) return noIsolationKeys
  for (const [name, value] of [[ISOLATION_HEADER_USER, user], [ISOLATION_HEADER_CHAT, chat]] as const) {
    if (value === undefined || value === "") continue
    const problem = isolationKeyProblem(value)
    if (problem !== undefined) return `header ${name} is not a valid isolation key: it ${problem}`
  }
  return {
    user: user === undefined || user === "" ? undefined : user,
    chat: chat === undefined || chat === "" ? undefined : chat
  }
}

/** A route's input; the query string is parsed on first use (most routes never read it). */
class Input implements RouteInput {
  #query: URLSearchParams | undefined
  constructor(
    readonly request: IncomingRequest,
    readonly params: RouteInput["params"],
    readonly isolation: IsolationKeys,
    private readonly search: string
  ) {}
  get query(): URLSearchParams {
    return this.#query ??= new URLSearchParams(this.search)
  }
}

interface BuiltChannel {
  readonly name: string
  readonly scope: Scope.CloseableScope
  readonly contribution: ChannelContribution
}

const closeAll = (built: ReadonlyArray<BuiltChannel>, exit: Exit.Exit<unknown, unknown>) =>
  Effect.gen(function*() {
    const failures: Array<{ channel: string; cause: Cause.Cause<unknown> }> = []
    for (const channel of [...built].reverse()) {
      const result = yield* Effect.exit(Scope.close(channel.scope, exit))
      if (Exit.isFailure(result)) failures.push({ channel: channel.name, cause: result.cause })
    }
    for (const failure of failures) {
      yield* Effect.logError("channel shutdown failed", failure.cause).pipe(
        Effect.annotateLogs({ channel: failure.channel })
      )
    }
    if (failures.length > 0) {
      yield* Effect.logError(`${failures.length} channel(s) failed to shut down; first: ${failures[0]!.channel}`)
    }
  })

export const make = <E, R>(options: Options<E, R>) =>
  Effect.gen(function*() {
    const settings = yield* HostConfig
    const turns = yield* Turns.Turns
    const registry = yield* Channels.Channels
    const authorizer = yield* Authorizer
    const target = yield* Target

    const names = options.channels.map((c) => c.name)
    const duplicate = names.find((name, i) => names.indexOf(name) !== i)
    if (duplicate !== undefined) {
      return yield* new HostConfigurationError({ message: `two channels are named "${duplicate}"`, channel: duplicate })
    }

    // Build every channel in its own scope, in order.
    const built: Array<BuiltChannel> = []
    yield* Effect.addFinalizer((exit) => closeAll(built, exit))
    for (const channel of options.channels) {
      // Not a child of the host scope: closeAll closes channel scopes itself, logging each failure.
      const scope = yield* Scope.make()
      const exit = yield* Effect.exit(Scope.extend(channel.make(turns.contextFor(channel.name)), scope))
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        yield* Effect.logError("channel failed to build", exit.cause).pipe(
          Effect.annotateLogs({ channel: channel.name })
        )
        return yield* Effect.failCause(exit.cause)
      }
      built.push({ name: channel.name, scope, contribution: exit.value })
      yield* registry.register({ name: channel.name, contribution: exit.value })
    }
    yield* registry.markRegistered
    // After the build, so the authorizer sees each channel's kind; before anything is served or started.
    yield* authorizer.validate(names)

    // Channels whose startup has not succeeded (yet). Written by the startup loop, read by readiness.
    const unready = new Map<string, Unready>()
    // The state database, when it sits behind a connection (Postgres): readiness asks it on every probe.
    const stateHealth = yield* Effect.serviceOption(StateHealth)
    const stateReadiness = Option.match(stateHealth, {
      onNone: () => Effect.succeed({}),
      onSome: (health) =>
        Effect.match(health.check, {
          onFailure: (error) => ({ state: { ready: false, error } }),
          onSuccess: () => ({ state: { ready: true } })
        })
    })
    // Every channel with its state: ready, or why not (and whether its startup is being retried); the state
    // database's when there is one to ask.
    const readinessResponse = Effect.map(stateReadiness, (database: { readonly state?: Readiness }) => {
      const channels: Record<string, { readonly ready: boolean } & Partial<Unready>> = {}
      for (const channel of built) {
        const state = unready.get(channel.name)
        channels[channel.name] = state === undefined ? { ready: true } : { ready: false, ...state }
      }
      const databaseDown = database.state?.error
      if (unready.size === 0 && databaseDown === undefined) return json({ status: "ok", channels, ...database })
      const names = [...unready.keys()]
      return json({
        status: "unready",
        channels,
        ...database,
        error: unready.size === 0 ?
          { message: `the state database is not ready: ${databaseDown}`, type: "state_unready" } :
          { message: `channel(s) not ready: ${names.join(", ")}`, type: "channel_unready", channels: names }
      }, 503)
    })

    const upgradeHandlers = new Map<string, UpgradeRoute>()

    // Mount: readiness and liveness first, so no channel can shadow them. Liveness says only that the process
    // answers (a restart would not help a channel that is unready).
    const router = new Router()
    router.add({
      channel: "host",
      fullPath: "/readiness",
      route: { method: "GET", path: "/readiness", handler: () => readinessResponse }
    })
    router.add({
      channel: "host",
      fullPath: "/liveness",
      route: { method: "GET", path: "/liveness", handler: () => Effect.succeed(liveness) }
    })
    for (const channel of built) {
      for (const route of channel.contribution.routes) {
        const fullPath = joinPath(channel.contribution.path, route.path)
        const clash = router.add({ channel: channel.name, fullPath, route })
        if (clash !== undefined) {
          return yield* new HostConfigurationError({
            message: `${route.method} ${fullPath} of channel "${channel.name}" is already served by "${clash.channel}"`,
            channel: channel.name
          })
        }
      }
    }

    // The identity linker's routes (the sign-in callback), when the core's linker has any.
    const linker = yield* Effect.serviceOption(IdentityLinker)
    const linkRoutes = Option.isSome(linker) ? linker.value.routes : undefined
    for (const route of linkRoutes?.routes ?? []) {
      const fullPath = joinPath(linkRoutes!.path, route.path)
      const clash = router.add({ channel: "link", fullPath, route })
      if (clash !== undefined) {
        return yield* new HostConfigurationError({
          message: `${route.method} ${fullPath} of the identity linker is already served by "${clash.channel}"; ` +
            `move the link routes with AGENT_HOST_LINK_PATH`,
          channel: clash.channel
        })
      }
    }

    // WebSocket endpoints: a table of their own (a `GET` upgrade and a plain `GET` on one path do not clash).
    const upgradeRouter = new Router()
    for (const channel of built) {
      for (const upgrade of channel.contribution.upgrades ?? []) {
        const fullPath = joinPath(channel.contribution.path, upgrade.path)
        const route = { method: "GET", path: upgrade.path, handler: () => Effect.die("an upgrade route") } as const
        const clash = upgradeRouter.add({ channel: channel.name, fullPath, route })
        if (clash !== undefined) {
          return yield* new HostConfigurationError({
            message:
              `the WebSocket endpoint ${fullPath} of channel "${channel.name}" is already served by "${clash.channel}"`,
            channel: channel.name
          })
        }
        upgradeHandlers.set(`${channel.name}\u0000${fullPath}`, upgrade)
      }
    }

    // Startup work, in channel order. A failure marks the channel unready and retries it in the background
    // (in the channel's scope, so shutdown stops the retries); the other channels serve meanwhile.
    const startupFailures: Array<string> = []
    for (const channel of built) {
      const startup = channel.contribution.startup
      if (startup === undefined) continue
      let attempts = 0
      const attempt = Effect.suspend(() => {
        attempts++
        return Scope.extend(startup, channel.scope)
      }).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.fail(
            new ChannelStartupError({
              channel: channel.name,
              message: "the channel's startup failed unexpectedly",
              cause: defect
            })
          )
        ),
        Effect.tapErrorCause((cause) =>
          Effect.suspend(() => {
            const error = Cause.failureOption(cause)
            const retrying = Option.isSome(error) && error.value.retryable !== false
            const reason = Option.isSome(error) ? error.value.message : Cause.pretty(cause)
            unready.set(channel.name, { reason, retrying, attempts })
            return (retrying ?
              Effect.logWarning(`channel startup failed (attempt ${attempts}); retrying with backoff: ${reason}`) :
              Effect.logError(
                `channel startup failed (attempt ${attempts}) and cannot succeed as configured; not retrying: ${reason}`
              )).pipe(Effect.annotateLogs({ channel: channel.name }))
          })
        )
      )
      const exit = yield* Effect.exit(attempt)
      if (Exit.isSuccess(exit)) continue
      startupFailures.push(channel.name)
      yield* Effect.logError("channel startup failed", exit.cause).pipe(Effect.annotateLogs({ channel: channel.name }))
      const first = Cause.failureOption(exit.cause)
      if (Option.isSome(first) && first.value.retryable === false) continue
      const recovered = Effect.zipRight(
        Effect.retry(attempt, startupRetry),
        Effect.suspend(() => {
          unready.delete(channel.name)
          return Effect.logInfo(`channel started after ${attempts} attempts; ready`).pipe(
            Effect.annotateLogs({ channel: channel.name })
          )
        })
      ).pipe(Effect.ignore)
      yield* Effect.forkIn(Effect.interruptible(recovered), channel.scope)
    }
    if (startupFailures.length > 0) {
      yield* Effect.logError(
        `${startupFailures.length} channel(s) failed to start and are not ready: ${
          startupFailures.join(", ")
        }; the others serve; GET /readiness answers 503 until they start`
      )
    }

    const hasPushKey = makeMatcher(settings.pushKeys)
    const pushGrant = { reason: "push key" }

    const hostServed = hostCheck({
      bind: settings.host,
      listening: options.listen !== false,
      allowed: settings.allowedHosts
    })

    // Set when shutdown starts: new requests (on kept-alive connections) are refused, readiness turns unready,
    // and every response written from then on closes its connection.
    let draining = false

    // Routing and the host's checks, synchronously: every answer that needs no handler is written without a fiber.
    const route = (request: IncomingRequest): NodeHandler.Routed => {
      if (hostServed !== undefined && !hostServed(request.headers.host)) return misdirected(request)
      const url = request.url
      if (draining) {
        if (url === "/liveness" || url.startsWith("/liveness?")) return liveness
        return url === "/readiness" || url.startsWith("/readiness?") ? drainingReadiness : refused
      }
      const q = url.indexOf("?")
      const path = q === -1 ? url : url.slice(0, q)
      const found = router.find(request.method, path)
      if (found._tag === "NotFound") return errorJson(404, "not_found", `no route for ${request.method} ${path}`)
      if (found._tag === "MethodNotAllowed") {
        return json(
          { error: { message: `${request.method} is not allowed on ${path}`, type: "method_not_allowed" } },
          405,
          { allow: found.allowed.join(", ") }
        )
      }
      const compiled = found.match.route
      if (compiled.route.body === "json" && !isJsonContentType(request.headers["content-type"])) {
        return unsupportedMediaType
      }
      const isolation = lift(request, settings.trustIsolationHeaders)
      if (typeof isolation === "string") return errorJson(400, "invalid_isolation_key", isolation)
      const input = new Input(request, found.match.params, isolation, q === -1 ? "" : url.slice(q + 1))
      const routed = compiled.route.handler(input)
      // A push key lets this request's response target name any identity (see Delivery.TargetGrant).
      const handled = hasPushKey(request) ? Effect.provideService(routed, Delivery.TargetGrant, pushGrant) : routed
      return {
        route: compiled.fullPath,
        channel: compiled.channel,
        handler: isolation === noIsolationKeys ? handled : turns.withIsolation(isolation)(handled)
      }
    }

    // Every answer counted by channel and status (`agent_host_http_requests_total`, served by `GET /metrics`).
    const countRequest = requestCounter()
    // Routed handlers are counted by the listener as they end (`onHandled`): no Effect region per request.
    const countedRoute = (request: IncomingRequest): NodeHandler.Routed => {
      const routed = route(request)
      if (HttpServerResponse.isServerResponse(routed)) countRequest("host", routed.status)
      return routed
    }

    // The same checks for a WebSocket upgrade, answered on the raw socket; isolation and grants hold for the
    // connection's whole life (its turns run later, from its frames).
    const routeUpgrade = (request: IncomingRequest): Upgrade.UpgradeRouted => {
      if (hostServed !== undefined && !hostServed(request.headers.host)) return misdirected(request)
      if (draining) return refused
      const url = request.url
      const q = url.indexOf("?")
      const path = q === -1 ? url : url.slice(0, q)
      const found = upgradeRouter.find("GET", path)
      if (found._tag !== "Found" || request.method !== "GET") {
        return errorJson(404, "not_found", `no WebSocket endpoint at ${request.method} ${path}`)
      }
      if (String(request.headers.upgrade).toLowerCase() !== "websocket") {
        return errorJson(400, "unsupported_upgrade", `${path} upgrades to websocket only`)
      }
      const compiled = found.match.route
      const upgrade = upgradeHandlers.get(`${compiled.channel}\u0000${compiled.fullPath}`)!
      const isolation = lift(request, settings.trustIsolationHeaders)
      if (typeof isolation === "string") return errorJson(400, "invalid_isolation_key", isolation)
      const input = new Input(request, found.match.params, isolation, q === -1 ? "" : url.slice(q + 1))
      const granted = hasPushKey(request)
      const wrap = <A>(effect: Effect.Effect<A>): Effect.Effect<A> => {
        const withGrant = granted ? Effect.provideService(effect, Delivery.TargetGrant, pushGrant) : effect
        return isolation === noIsolationKeys ? withGrant : turns.withIsolation(isolation)(withGrant)
      }
      return {
        route: compiled.fullPath,
        channel: compiled.channel,
        handler: wrap(upgrade.handler(input)),
        wrap
      }
    }
    const upgrades = Upgrade.make({
      runtime: yield* Effect.runtime<never>(),
      route: routeUpgrade,
      maxPayload: settings.maxBodyBytes
    })

    const handler = NodeHandler.make({
      runtime: yield* Effect.runtime<never>(),
      route: countedRoute,
      onHandled: countRequest,
      closing: () => draining,
      tracing: settings.tracing,
      corsOrigins: settings.corsOrigins
    })

    let address = { host: settings.host, port: settings.port }
    if (options.listen !== false) {
      const server = Http.createServer(handler)
      server.on("upgrade", upgrades.listener)
      server.keepAliveTimeout = 5_000
      yield* Effect.acquireRelease(
        Effect.async<void, HostConfigurationError>((resume) => {
          const onError = (error: Error) =>
            resume(Effect.fail(
              new HostConfigurationError({
                message: `cannot listen on ${settings.host}:${settings.port}: ${error.message}`
              })
            ))
          server.once("error", onError)
          server.listen(settings.port, settings.host, () => {
            server.off("error", onError)
            resume(Effect.void)
          })
        }),
        () =>
          Effect.gen(function*() {
            draining = true
            let closed = false
            server.close(() => {
              closed = true
            })
            server.closeIdleConnections()
            yield* turns.drain(settings.shutdownGrace)
            // WebSockets are not the server's connections any more: channels close theirs at draining, once their
            // turn is done; what is still open is told "going away" now, and cut with the rest below.
            upgrades.closeAll(1001, "server shutting down")
            // Streams still open end with their terminal event now; wait for them, closing each connection as it
            // goes idle. On the wall clock, deliberately: a test's TestClock must not be able to hold this open.
            yield* Effect.sync(() => {
              server.closeIdleConnections()
              return closed
            }).pipe(
              Effect.repeat({
                schedule: Schedule.spaced(pollIdle).pipe(Schedule.upTo(closeMargin)),
                until: (isClosed) => isClosed
              }),
              onWallClock
            )
            if (!closed) {
              server.closeAllConnections()
              upgrades.terminateAll()
            }
          })
      )
      const bound = server.address()
      if (bound !== null && typeof bound === "object") address = { host: settings.host, port: bound.port }
    } else {
      // Embedded (`handler` in a server of your own): the same drain, without a server to close.
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          draining = true
          return Effect.zipRight(
            turns.drain(settings.shutdownGrace),
            Effect.sync(() => upgrades.closeAll(1001, "server shutting down"))
          )
        })
      )
    }

    const mounted: Array<MountedChannel> = built.map((channel) => ({
      name: channel.name,
      path: channel.contribution.path === "" ? "/" : joinPath(channel.contribution.path, ""),
      routes: router.routes().filter((r) => r.channel === channel.name).map((r) => `${r.route.method} ${r.fullPath}`)
    }))
    const url = `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`
    yield* Effect.logInfo(
      `agent host ready: target ${target.kind} "${target.name}" on ${url}; channels: ${
        mounted.map((c) => `${c.name}@${c.path}`).join(", ") || "none"
      }${unready.size === 0 ? "" : `; not ready yet: ${[...unready.keys()].join(", ")}`}`
    ).pipe(Effect.annotateLogs({ target: target.name, bind: url, channels: mounted.map((c) => c.name).join(",") }))

    return AgentHost.of({ address, url, channels: mounted, handler, upgrade: upgrades.listener })
  })

/**
 * The host with its channels. Requires the target, the state store and the host config; the core services
 * (sessions, delivery, turns) come from `HostLayers.layerCore` or your own layers.
 */
export const layer = <E, R>(
  options: Options<E, R>
): Layer.Layer<
  AgentHost,
  E | HostConfigurationError | ChannelStartupError,
  Exclude<R, Scope.Scope> | HostConfig | Turns.Turns | Channels.Channels | Authorizer | Target
> => Layer.scoped(AgentHost, make(options))

export const isolationKeysOf = (input: RouteInput): Option.Option<IsolationKeys> =>
  input.isolation === noIsolationKeys ? Option.none() : Option.some(input.isolation)
