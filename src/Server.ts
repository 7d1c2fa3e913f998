/**
 * The composition `npm start` runs, as a layer: config, logging, state, target, core services and the
 * channels the environment enables. Tests and benchmarks start exactly this.
 */
import type { HttpClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import {
  Config,
  ConfigError,
  Context,
  Effect,
  Either,
  FiberRef,
  HashSet,
  Layer,
  Logger,
  LogLevel,
  Option
} from "effect"
import type { Authorizer } from "./auth/Authorizer.js"
import * as ChatCompletions from "./channels/ChatCompletions/index.js"
import * as Invocations from "./channels/Invocations.js"
import * as Responses from "./channels/Responses/index.js"
import * as WebChat from "./channels/WebChat/WebChat.js"
import * as AgentHost from "./core/AgentHost.js"
import type { Channel } from "./core/Channel.js"
import type { Channels } from "./core/Channels.js"
import * as DefaultAgent from "./core/DefaultAgent.js"
import * as HostConfig from "./core/HostConfig.js"
import * as HostLayers from "./core/HostLayers.js"
import type { Sessions } from "./core/Sessions.js"
import type { Target } from "./core/Target.js"
import type { Turns } from "./core/Turns.js"
import * as AdminRoutes from "./delivery/AdminRoutes.js"
import type { Delivery, PushScheduler } from "./delivery/Delivery.js"
import * as DurablePush from "./delivery/DurablePush.js"
import * as MetricsRoute from "./delivery/MetricsRoute.js"
import * as TaskRunner from "./delivery/TaskRunner.js"
import type { ChannelStartupError, HostConfigurationError } from "./domain/Errors.js"
import * as UndiciClient from "./http/UndiciClient.js"
import * as LogLine from "./internal/LogLine.js"
import * as Persistence from "./state/Persistence.js"
import * as StateWriter from "./state/sqlite/StateWriter.js"
import * as Telemetry from "./Telemetry.js"

const levels: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

// An empty LOG_LEVEL counts as unset; an unknown one is a configuration error that names the choices.
const logLevel = Config.string("LOG_LEVEL").pipe(
  Config.withDefault(""),
  Config.mapOrFail((raw) => {
    const name = raw.trim().toLowerCase()
    if (name === "") return Either.right(LogLevel.Info)
    const level = levels[name]
    return level === undefined ?
      Either.left(ConfigError.InvalidData([], `LOG_LEVEL must be one of ${Object.keys(levels).join(", ")}`)) :
      Either.right(level)
  })
)

// LOG_FORMAT: text (logfmt, the default) or json; an empty value counts as unset.
const logFormat = Config.string("LOG_FORMAT").pipe(
  Config.withDefault(""),
  Config.mapOrFail((raw) => {
    const name = raw.trim().toLowerCase()
    if (name === "" || name === "text" || name === "logfmt") return Either.right("text" as const)
    if (name === "json") return Either.right("json" as const)
    return Either.left(ConfigError.InvalidData([], "LOG_FORMAT must be text or json"))
  })
)

// Reads LOG_FORMAT then LOG_LEVEL; the effect it gives installs the logger and the level for its scope (what
// `Logger.replace` and `Logger.minimumLogLevel` do, in one layer build instead of eight: cold start).
const loggingFromEnv = Effect.map(Effect.all([logFormat, logLevel]), ([format, level]) => {
  const logger = Logger.withConsoleLog(format === "json" ? LogLine.jsonLogger : LogLine.lineLogger)
  return Effect.zipRight(
    Effect.locallyScopedWith(
      FiberRef.currentLoggers,
      (loggers) => HashSet.add(HashSet.remove(loggers, Logger.defaultLogger), logger)
    ),
    Effect.locallyScoped(FiberRef.currentMinimumLogLevel, level)
  )
})

/**
 * Logging: one logfmt line per entry (timestamp, level, fiber, message, annotations), or with LOG_FORMAT=json
 * one JSON object per line (plus trace and span ids when tracing), at LOG_LEVEL (default info); every value
 * escaped so no logged value can break or forge a line (see `internal/LogLine`).
 */
export const layerLogging = Layer.scopedDiscard(Effect.flatten(loggingFromEnv))

/**
 * What the host runs under (`cli/Launch`): logging (`layerLogging`), with OpenTelemetry's export over it when an
 * OTLP endpoint is set (`Telemetry.layerFromEnv`). Logging settings are read first, as before; a start without
 * OTLP builds three layers here instead of ~16.
 */
export const layerLoggingAndTelemetry: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    const logging = Layer.scopedDiscard(yield* loggingFromEnv)
    const otlp = yield* Telemetry.settingsFromEnv
    return Option.isSome(otlp)
      ? Layer.provideMerge(Telemetry.layer(otlp.value) as Layer.Layer<never>, logging)
      : logging
  })
)

/** A variable that is set and not blank (what turns a channel on; its `fromConfig` then reads the rest). */
const isSet = (name: string): Effect.Effect<boolean, ConfigError.ConfigError> =>
  Effect.map(Config.option(Config.string(name)), (value) => Option.isSome(value) && value.value.trim().length > 0)

/** The channels enabled by the environment; they may need an `HttpClient` (Telegram's Bot API calls). */
export const channelsFromEnv: Effect.Effect<
  ReadonlyArray<Channel<never, HttpClient.HttpClient>>,
  ConfigError.ConfigError
> = Effect
  .gen(function*() {
    const invocations = yield* Config.boolean("AGENT_HOST_INVOCATIONS").pipe(Config.withDefault(true))
    const responses = yield* Config.boolean("AGENT_HOST_RESPONSES").pipe(Config.withDefault(true))
    // Chat Completions and GET /v1/models (docs/CHAT_COMPLETIONS.md): on with Responses, the same OpenAI surface.
    const chatCompletions = yield* Config.boolean("AGENT_HOST_CHAT_COMPLETIONS").pipe(Config.withDefault(true))
    // The hosted target's model id (default: the target's name).
    const modelId = Option.getOrUndefined(yield* Config.option(Config.nonEmptyString("AGENT_HOST_MODEL_ID")))
    const model = modelId === undefined ? {} : { model: modelId }
    const channels: Array<Channel<never, HttpClient.HttpClient>> = []
    if (responses) channels.push(Responses.make(model))
    if (chatCompletions) channels.push(ChatCompletions.make(model))
    if (responses || chatCompletions) {
      channels.push(ChatCompletions.Models.make(modelId === undefined ? {} : { id: modelId }))
    }
    if (invocations) channels.push(Invocations.make())
    // Web chat: the page at AGENT_HOST_WEBCHAT_PATH (default "/"); AGENT_HOST_WEBCHAT=false turns it off.
    const webchat = yield* Config.boolean("AGENT_HOST_WEBCHAT").pipe(Config.withDefault(true))
    if (webchat) channels.push(WebChat.make(yield* WebChat.config))
    // Telegram: enabled by TELEGRAM_BOT_TOKEN (see docs/TELEGRAM.md). Each channel below is imported only when its
    // variable is set: its module (schemas, clients) is then evaluated, not on every start.
    if (yield* isSet("TELEGRAM_BOT_TOKEN")) {
      const Telegram = yield* Effect.promise(() => import("./channels/Telegram/Telegram.js"))
      channels.push(...Option.toArray(yield* Telegram.fromConfig))
    }
    // MCP: AGENT_HOST_MCP=true (docs/MCP.md); imported only then, the SDK is large.
    if (yield* Config.boolean("AGENT_HOST_MCP").pipe(Config.withDefault(false))) {
      const { Mcp } = yield* Effect.promise(() => import("./channels/Mcp/index.js"))
      channels.push(...Option.toArray(yield* Mcp.fromConfig))
    }
    // Bot Framework activities (Teams, via Azure Bot Service): enabled by MICROSOFT_APP_ID (see docs/TEAMS.md).
    if (yield* isSet("MICROSOFT_APP_ID")) {
      const Activity = yield* Effect.promise(() => import("./channels/Activity/Activity.js"))
      channels.push(...Option.toArray(yield* Activity.fromConfig))
    }
    // Discord: enabled by DISCORD_APPLICATION_ID and DISCORD_PUBLIC_KEY (see docs/DISCORD.md).
    if (yield* isSet("DISCORD_APPLICATION_ID")) {
      const Discord = yield* Effect.promise(() => import("./channels/Discord/Discord.js"))
      channels.push(...Option.toArray(yield* Discord.fromConfig))
    }
    // A2A: AGENT_HOST_A2A=true (docs/A2A.md); imported only then.
    if (yield* Config.boolean("AGENT_HOST_A2A").pipe(Config.withDefault(false))) {
      const { A2A } = yield* Effect.promise(() => import("./channels/A2A/index.js"))
      channels.push(...Option.toArray(yield* A2A.fromConfig))
    }
    return channels
  })

/**
 * The target: OpenAI when OPENAI_API_KEY is set, the embedded default agent otherwise. The OpenAI agent is
 * imported only then: @effect/ai-openai (its schemas and tokenizer) is most of the bundle's startup cost.
 */
export const targetFromEnv = Layer.unwrapEffect(
  Effect.flatMap(
    Config.option(Config.redacted("OPENAI_API_KEY")),
    (key) =>
      Option.isSome(key) ?
        Effect.promise(() => import("./core/OpenAiAgent.js")).pipe(
          Effect.map((OpenAiAgent) => OpenAiAgent.layerConfig)
        ) :
        Effect.succeed(DefaultAgent.layer)
  )
)

// The state database's client (and on SQLite its writer), passed through so the durable task store shares them
// (and on SQLite the owner lock).
const sqlClientOnly = Layer.effect(SqlClient.SqlClient, SqlClient.SqlClient)
const sqlClientPassthrough = Layer.effectContext(
  Effect.map(
    Effect.context<SqlClient.SqlClient | StateWriter.StateWriter>(),
    Context.pick(SqlClient.SqlClient, StateWriter.StateWriter)
  )
)

/**
 * `channels` on the core services (pushes by `push`), over `target`, the host settings and `state`, built in
 * order in one scope: state, settings, target, core services (`HostLayers.buildCoreWith`), then the host and the
 * task retention. What `AgentHost.layer(...).pipe(Layer.provideMerge(core), Layer.provide(target), ...)` builds,
 * without its ~40 memoised layer builds (about a fifth of the Effect steps of a start: docs/PERFORMANCE.md, cold
 * start). Outputs the host and the core services.
 */
const assemble = <TE, PO, PE, PR, SO, SE>(options: {
  readonly channels: ReadonlyArray<Channel<never, HttpClient.HttpClient | TaskRunner.TaskRunner | Sessions | Turns>>
  readonly target: Layer.Layer<Target, TE>
  readonly settings: Partial<HostConfig.HostConfigShape>
  readonly push: Layer.Layer<PushScheduler | PO, PE, PR>
  readonly state: Layer.Layer<SO, SE>
}) =>
  Layer.scopedContext(Effect.gen(function*() {
    const scope = yield* Effect.scope
    const memoMap = yield* Layer.CurrentMemoMap
    const build = <ROut, E, RIn>(layer: Layer.Layer<ROut, E, RIn>, context: Context.Context<any>) =>
      Effect.provide(Layer.buildWithMemoMap(layer, memoMap, scope), context) as Effect.Effect<Context.Context<ROut>, E>
    let context: Context.Context<any> = yield* Layer.buildWithMemoMap(options.state, memoMap, scope)
    context = Context.add(context, HostConfig.HostConfig, yield* HostConfig.fromConfig(options.settings))
    context = Context.merge(context, yield* build(options.target, context))
    const core = yield* Effect.provide(HostLayers.buildCoreWith({ push: options.push }), context) as Effect.Effect<
      Context.Context<Turns | Sessions | Channels | Authorizer | Delivery | PushScheduler | PO>,
      ConfigError.ConfigError | PE
    >
    context = Context.merge(context, core)
    // Outgoing HTTP (the Bot API, Bot Framework, Discord) on undici, loaded on the first call.
    const host = yield* Effect.provide(
      AgentHost.make({ channels: options.channels }),
      Context.merge(context, yield* build(UndiciClient.layer, context))
    ) as Effect.Effect<AgentHost.AgentHostShape, HostConfigurationError | ChannelStartupError>
    // Finished tasks are pruned after AGENT_HOST_TASK_RETENTION, like stored Responses.
    yield* build(TaskRunner.layerRetention, context)
    return Context.add(core, AgentHost.AgentHost, host)
  }))

/**
 * Everything `npm start` runs: state (SQLite in AGENT_HOST_STATE_DIR, memory with AGENT_HOST_STATE=memory, or
 * Postgres at DATABASE_URL with AGENT_HOST_STATE=postgres), durable pushes on the same database (in-memory runner
 * in memory mode), the target, the channels the
 * environment enables and the admin routes for tasks.
 */
export const layerFromEnvWith = <TE>(target: Layer.Layer<Target, TE>) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const channels = yield* channelsFromEnv
      const settings = yield* Persistence.config
      const all = [...channels, AdminRoutes.make(), MetricsRoute.make()]
      // AGENT_HOST_TRACING defaults to on when traces are exported (OTEL_EXPORTER_OTLP_ENDPOINT, see Telemetry).
      const tracingSet = Option.isSome(yield* Config.option(Config.boolean("AGENT_HOST_TRACING")))
      const hostSettings = !tracingSet && (yield* Telemetry.tracesExported) ? { tracing: true } : {}
      // AGENT_HOST_CLUSTER=postgres: one runner of a cluster; its code is loaded only then.
      const cluster = yield* Config.literal("off", "postgres")("AGENT_HOST_CLUSTER").pipe(Config.withDefault("off"))
      if (cluster === "postgres") {
        const host = AgentHost.layer<never, HttpClient.HttpClient | TaskRunner.TaskRunner | Sessions | Turns>({
          channels: all
        }).pipe(
          Layer.provide(UndiciClient.layer),
          Layer.merge(TaskRunner.layerRetention)
        )
        const Cluster = yield* Effect.promise(() => import("./cluster/Cluster.js"))
        return Cluster.layerRunner(yield* Cluster.config, host).pipe(
          Layer.provide(target),
          Layer.provide(HostConfig.layerConfig(hostSettings)),
          Layer.provide(Persistence.layerWith(settings, {
            postgres: Layer.empty,
            sqlite: Layer.die("a cluster's state is on Postgres") as never,
            memory: Layer.die("a cluster's state is on Postgres") as never
          }))
        )
      }
      if (settings.mode === "memory") {
        return assemble({
          channels: all,
          target,
          settings: hostSettings,
          push: DurablePush.layerMemory,
          state: Persistence.layer(settings)
        })
      }
      if (settings.mode === "postgres") {
        // Durable pushes on the Postgres pool; imported only here, as the stores are (Persistence.layerWith).
        const PgTaskStore = yield* Effect.promise(() => import("./delivery/PgTaskStore.js"))
        return assemble({
          channels: all,
          target,
          settings: hostSettings,
          push: PgTaskStore.layerPush,
          state: Persistence.layerWith(settings, {
            postgres: sqlClientOnly,
            // Not reached: this branch is for Postgres mode only.
            sqlite: Layer.die("sqlite mode is composed below") as never,
            memory: Layer.die("memory mode is composed above") as never
          })
        })
      }
      return assemble({
        channels: all,
        target,
        settings: hostSettings,
        push: DurablePush.layerSqlite,
        state: Persistence.layerWith(settings, {
          sqlite: sqlClientPassthrough,
          // Not reached: this branch is for SQLite mode only.
          memory: Layer.die("memory mode is composed above") as never,
          postgres: Layer.die("postgres mode is composed above") as never
        })
      })
    })
  )

/** Everything `npm start` runs: `layerFromEnvWith` the target the environment picks. */
export const layerFromEnv = layerFromEnvWith(targetFromEnv)
