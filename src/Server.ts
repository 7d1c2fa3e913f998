/**
 * The composition `npm start` runs, as a layer: config, logging, state, target, core services and the
 * channels the environment enables. Tests and benchmarks start exactly this.
 */
import type { ConfigError } from "effect"
import { Config, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as AgentHost from "./AgentHost.js"
import type { Channel } from "./Channel.js"
import * as Invocations from "./channels/Invocations.js"
import * as Telegram from "./channels/Telegram/Telegram.js"
import * as DefaultAgent from "./DefaultAgent.js"
import * as HostConfig from "./HostConfig.js"
import * as StateStore from "./StateStore.js"

const logLevel = Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

/** Logging: logfmt lines at LOG_LEVEL (default info). */
export const layerLogging = Layer.unwrapEffect(
  Effect.map(
    logLevel,
    (level) => Layer.merge(Logger.replace(Logger.defaultLogger, Logger.logfmtLogger), Logger.minimumLogLevel(level))
  )
)

/** The channels enabled by the environment. */
export const channelsFromEnv: Effect.Effect<ReadonlyArray<Channel>, ConfigError.ConfigError> = Effect
  .gen(function*() {
    const invocations = yield* Config.boolean("AGENT_HOST_INVOCATIONS").pipe(Config.withDefault(true))
    const channels: Array<Channel> = []
    if (invocations) channels.push(Invocations.make())
    // Telegram: enabled by TELEGRAM_BOT_TOKEN (see docs/TELEGRAM.md).
    const telegram = yield* Telegram.fromConfig
    if (Option.isSome(telegram)) channels.push(telegram.value)
    return channels
  })

/** The target: OpenAI when OPENAI_API_KEY is set, the embedded default agent otherwise. */
export const targetFromEnv = Layer.unwrapEffect(
  Effect.map(
    Config.option(Config.redacted("OPENAI_API_KEY")),
    (key) => Option.isSome(key) ? DefaultAgent.layer : DefaultAgent.layer
  )
)

export const layerFromEnv = Layer.unwrapEffect(
  Effect.map(channelsFromEnv, (channels) =>
    AgentHost.layerWithCore({ channels }).pipe(
      Layer.provide(targetFromEnv),
      Layer.provide(StateStore.layerMemory),
      Layer.provide(HostConfig.layerConfig())
    ))
).pipe(Layer.provide(layerLogging))
