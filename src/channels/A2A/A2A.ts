/**
 * The A2A channel (protocol 1.0, `@a2a-js/sdk` 1.3): the agent card at `/.well-known/agent-card.json` and the
 * JSON-RPC endpoint (`/a2a` by default) served by the SDK's `DefaultRequestHandler` and
 * `JsonRpcTransportHandler` on the host's own listener (no express): `SendMessage`, `SendStreamingMessage`
 * (SSE), `GetTask`, `ListTasks`, `CancelTask`, `SubscribeToTask`; unless turned off, the 0.3 names too
 * (`message/send`, `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`) through the SDK's compat
 * layer, for requests without `A2A-Version` or with `0.3`. Tasks are kept in the host's state (see TaskStore),
 * the `contextId` is the session (see Executor). See docs/A2A.md.
 */
import type { AgentCard } from "@a2a-js/sdk"
import { formatSSEErrorEvent, formatSSEEvent } from "@a2a-js/sdk"
import { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server"
import { DefaultRequestHandler, JsonRpcTransportHandler, ServerCallContext, validateVersion } from "@a2a-js/sdk/server"
import type { ConfigError } from "effect"
import { Config, Effect, Either, FiberSet, Option, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks, RouteInput, TargetInfo, TargetSkill } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { callerOf } from "../../http/CallerScope.js"
import { describeBodyError, json, readJson } from "../../http/HttpBody.js"
import * as Sse from "../../http/Sse.js"
import * as Executor from "./Executor.js"
import * as TaskStore from "./TaskStore.js"

export type Skill = TargetSkill

export interface Options {
  readonly name?: string
  /** The JSON-RPC endpoint's path (default `/a2a`). */
  readonly path?: string
  /** The card's `name` (default: the hosted target's name). */
  readonly agentName?: string
  /** The card's `description` (default: the hosted target's own, else one naming the target and its kind). */
  readonly description?: string
  readonly version?: string
  readonly skills?: ReadonlyArray<Skill>
  /**
   * The public URL of the JSON-RPC endpoint the card advertises. Default: built from the card request's `Host`
   * header (`http://<host><path>`), right on a direct connection, wrong behind a proxy: set it there.
   */
  readonly url?: string
  /** Most tasks kept per caller (default 500); a new task past it replaces the caller's oldest. */
  readonly maxTasksPerCaller?: number
  /**
   * Also serve A2A 0.3 clients (default true): the 0.3 method names for requests without `A2A-Version` (or with
   * `0.3`), and the card's 0.3 fields (`url`, `preferredTransport`, `protocolVersion`) for card requests like them.
   */
  readonly v03?: boolean
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

const protocolVersion = "1.0"
const legacyVersion = "0.3"

const defaultSkill: Skill = {
  id: "chat",
  name: "Chat",
  description: "Talk with the agent; a contextId continues a conversation."
}

export const card = (
  options: Options,
  url: string,
  target: TargetInfo
): AgentCard => ({
  name: options.agentName ?? target.name,
  description: options.description ?? target.description ??
    `The ${target.kind} "${target.name}", hosted by effect-agent-host.`,
  // The SDK checks a request's A2A-Version against these; 1.0 clients pick the 1.0 one.
  supportedInterfaces: [
    { url, protocolBinding: "JSONRPC", tenant: "", protocolVersion },
    ...(options.v03 === false ? [] : [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: legacyVersion }])
  ],
  provider: undefined,
  version: options.version ?? "1.0.0",
  capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ["text/plain"],
  defaultOutputModes: ["text/plain"],
  skills: (options.skills ?? target.skills ?? [defaultSkill]).map((skill) => ({
    id: skill.id,
    name: skill.name,
    description: skill.description,
    tags: [...(skill.tags ?? [])],
    examples: [...(skill.examples ?? [])],
    inputModes: [],
    outputModes: [],
    securityRequirements: []
  })),
  signatures: []
})

/** A JSON-RPC error answered before the SDK sees the request. */
const rpcError = (status: number, id: unknown, code: number, message: string, headers?: Record<string, string>) =>
  json(
    { jsonrpc: "2.0", id: typeof id === "string" || typeof id === "number" ? id : null, error: { code, message } },
    status,
    headers
  )

/** Pulls a stream's remaining events (each one is saved to the task store as it passes) and drops them. */
const drain = (iterator: AsyncIterator<unknown>): Effect.Effect<void> =>
  Effect.promise(async () => {
    try {
      while ((await iterator.next()).done !== true) {
        // The SDK's generator saves the event before yielding it.
      }
    } catch {
      // No reader is left to tell; the task keeps the state its last saved event gave it.
    }
  })

/**
 * The card for 0.3 clients: the 1.0 card plus the 0.3 top-level fields, the superset the SDK's own compat card
 * router serves (its 1.0 client reads `supportedInterfaces`, 0.3 clients read `url`).
 */
export const legacyCard = (card: AgentCard): Record<string, unknown> => ({
  ...card,
  url: card.supportedInterfaces[0]?.url ?? "",
  preferredTransport: "JSONRPC",
  protocolVersion: legacyVersion
})

const header = (input: RouteInput, name: string): string | undefined => {
  const value = input.request.headers[name]
  return typeof value === "string" && value.length > 0 ? value : undefined
}

/** A request in 0.3 terms: no `A2A-Version` (0.3 predates the header) or `0.3`, as the SDK's routers decide. */
const isLegacy = (version: string | undefined) => version === undefined || version === legacyVersion

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "a2a"
  const path = options.path ?? "/a2a"
  const v03 = options.v03 !== false
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const authorized = makeChecker(ctx.settings.apiKeys)
      const apiKeysConfigured = ctx.settings.apiKeys.length > 0 || ctx.settings.pushKeys.length > 0
      // The SDK calls the store and the executor with promises: their fibers live in the channel's scope.
      const runPromise = yield* FiberSet.makeRuntimePromise<never>()
      const runFork = yield* FiberSet.makeRuntime<never>()
      const semaphore = yield* Effect.makeSemaphore(1)
      const store = TaskStore.make({
        state: ctx.state,
        maxTasks: options.maxTasksPerCaller ?? 500,
        runPromise: (effect) => runPromise(effect),
        lock: semaphore.withPermits(1)
      })
      const executor = Executor.make({ ctx, runFork: (effect) => runFork(effect) })
      // The card the handler validates versions against; the served card has the caller-facing URL.
      const baseCard = card(options, options.url ?? path, ctx.target)
      const requestHandler = new DefaultRequestHandler(baseCard, store, executor)
      const transport = new JsonRpcTransportHandler(requestHandler)
      const legacyTransport = new LegacyJsonRpcTransportHandler(requestHandler)

      const cardRoute = ChannelModule.handler((input) =>
        Effect.sync(() => {
          const url = options.url ?? `http://${header(input, "host") ?? "localhost"}${path}`
          const served = card(options, url, ctx.target)
          return json(v03 && isLegacy(header(input, "a2a-version")) ? legacyCard(served) : served, 200, {
            "cache-control": "public, max-age=300",
            vary: "A2A-Version"
          })
        })
      )

      const rpcRoute = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) {
            return rpcError(401, null, -32001, "a valid API key is required: send Authorization: Bearer <key>", {
              "www-authenticate": "Bearer"
            })
          }
          const read = yield* Effect.either(readJson(input.request, ctx.settings))
          if (Either.isLeft(read)) {
            const problem = describeBodyError(read.left)
            return rpcError(problem.status, null, problem.type === "invalid_json" ? -32700 : -32600, problem.message)
          }
          const body = read.right
          if (body === null || typeof body !== "object" || Array.isArray(body)) {
            return rpcError(
              400,
              null,
              -32600,
              "the request must be one JSON-RPC request object (batches are not supported)"
            )
          }
          const id = (body as Record<string, unknown>)["id"]
          const requestedVersion = header(input, "a2a-version")
          const legacy = v03 && isLegacy(requestedVersion)
          const mapError = legacy ?
            LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError :
            JsonRpcTransportHandler.mapToJSONRPCError
          const state = new Map<string, unknown>([
            [TaskStore.callerStateKey, callerOf(input.request, input.isolation.user, apiKeysConfigured)]
          ])
          const context = new ServerCallContext({
            state,
            ...(requestedVersion === undefined ? {} : { requestedVersion })
          })
          const handled = yield* Effect.either(Effect.tryPromise(async () => {
            validateVersion(context.requestedVersion, baseCard, "JSONRPC")
            return (legacy ? legacyTransport : transport).handle(body as Record<string, unknown>, context)
          }))
          if (Either.isLeft(handled)) {
            const error = mapError(handled.left.error)
            return json({ jsonrpc: "2.0", id: id ?? null, error }, error.code === -32603 ? 500 : 200)
          }
          const result = handled.right
          if (!(Symbol.asyncIterator in result)) return json(result)
          // Streaming: the first event (or the error that prevents one) decides between JSON and SSE.
          const iterator = result[Symbol.asyncIterator]()
          const first = yield* Effect.either(Effect.tryPromise(() => iterator.next()))
          if (Either.isLeft(first)) {
            const error = { jsonrpc: "2.0" as const, id: id ?? null, error: mapError(first.left.error) }
            // 0.3's tasks/resubscribe answers on the event stream even when it fails (as the SDK's router does).
            const method = (body as Record<string, unknown>)["method"]
            return legacy && method === "tasks/resubscribe" ?
              Sse.response(Stream.make(formatSSEErrorEvent(error))) :
              json(error)
          }
          // Without `return`: Stream.fromAsyncIterable would call it when the reader leaves (see below).
          const rest = Stream.fromAsyncIterable({ [Symbol.asyncIterator]: () => ({ next: () => iterator.next() }) }, (
            error
          ) => error)
          const events = first.right.done === true ? Stream.empty : Stream.concat(Stream.make(first.right.value), rest)
          const frames = events.pipe(
            Stream.map((event) => formatSSEEvent(event)),
            Stream.catchAll((error) =>
              Stream.make(formatSSEErrorEvent({
                jsonrpc: "2.0",
                id: id ?? null,
                error: mapError(error)
              }))
            ),
            // A reader that leaves does not stop the task: it runs on (SubscribeToTask picks it up), and the
            // SDK persists each event only as this generator is pulled, so the rest is drained in the background.
            Stream.ensuring(Effect.sync(() => runFork(drain(iterator))))
          )
          return Sse.response(frames)
        })
      )

      return {
        kind: "programmatic",
        path: "",
        routes: [
          { method: "GET", path: "/.well-known/agent-card.json", handler: cardRoute },
          { method: "POST", path, handler: rpcRoute, body: "json" }
        ],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: `A2A ${protocolVersion}${v03 ? ` (and ${legacyVersion})` : ""} JSON-RPC at ${path}`
      }
    }))
}

/** The channel when `AGENT_HOST_A2A=true` (see docs/A2A.md for the other settings). */
export const fromConfig: Effect.Effect<Option.Option<Channel>, ConfigError.ConfigError> = Effect.gen(function*() {
  const enabled = yield* Config.boolean("AGENT_HOST_A2A").pipe(Config.withDefault(false))
  if (!enabled) return Option.none()
  const path = yield* Config.string("AGENT_HOST_A2A_PATH").pipe(Config.withDefault("/a2a"))
  const url = yield* Config.option(Config.string("AGENT_HOST_A2A_URL"))
  const agentName = yield* Config.option(Config.string("AGENT_HOST_A2A_NAME"))
  const description = yield* Config.option(Config.string("AGENT_HOST_A2A_DESCRIPTION"))
  const maxTasksPerCaller = yield* Config.integer("AGENT_HOST_A2A_MAX_TASKS").pipe(Config.withDefault(500))
  const v03 = yield* Config.boolean("AGENT_HOST_A2A_V03").pipe(Config.withDefault(true))
  return Option.some(make({
    path,
    v03,
    maxTasksPerCaller: Math.max(1, maxTasksPerCaller),
    ...(Option.isSome(url) ? { url: url.value } : {}),
    ...(Option.isSome(agentName) ? { agentName: agentName.value } : {}),
    ...(Option.isSome(description) ? { description: description.value } : {})
  }))
})
