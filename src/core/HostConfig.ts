/**
 * Host settings, read through `Config` (environment by default).
 */
import { Config, ConfigError, Context, Duration, Effect, Either, Layer, Redacted } from "effect"
import type { Bytes } from "../domain/Size.js"
import * as Size from "../domain/Size.js"
import { originProblem } from "../http/Cors.js"
import type { HostSettings } from "./Channel.js"

export interface HostConfigShape extends HostSettings {
  readonly port: number
  readonly host: string
  /** How many of a session's most recent messages a turn sees (and the host keeps cached per session). */
  readonly historyLimit: number
  /** The most the cache of recent session histories may hold (estimated heap size); LRU sessions go first. */
  readonly historyCacheBytes: Bytes
  /** The most destinations one request's `response_target` may name; more is refused with a 400. */
  readonly maxResponseTargets: number
  /**
   * `Host` header names served besides `localhost`, `127.0.0.1` and `[::1]` when bound to loopback (anything else
   * gets a 421: DNS rebinding); when set, they are the only names served on any address.
   */
  readonly allowedHosts: ReadonlyArray<string>
  /**
   * How long shutdown waits for in-flight turns (running and queued) before ending them: streams then end with
   * their terminal event, blocking requests get a 503, stored responses are kept as `incomplete`.
   */
  readonly shutdownGrace: Duration.Duration
  /**
   * A span per routed request (`http.server <METHOD>`, kind server, with `http.method`, `http.route` and
   * `http.status_code`) and per turn (`agent_host.turn`, under it), exported by whatever tracer the app
   * provides (`AGENT_HOST_TRACING`). Off (the default): no span and no tracer work per request.
   */
  readonly tracing: boolean
  /**
   * Origins a browser may call the host from (`AGENT_HOST_CORS_ORIGINS`, comma-separated; `*` for any, only when
   * written so). Empty (the default): no CORS headers, preflights are not answered.
   */
  readonly corsOrigins: ReadonlyArray<string>
}

export class HostConfig extends Context.Tag("effect-agent-host/HostConfig")<HostConfig, HostConfigShape>() {}

export const defaults: HostConfigShape = {
  port: 8000,
  host: "127.0.0.1",
  trustIsolationHeaders: false,
  maxBodyBytes: 1024 * 1024,
  apiKeys: [],
  adminKeys: [],
  pushKeys: [],
  historyLimit: 200,
  historyCacheBytes: Size.mebibytes(64),
  maxResponseTargets: 32,
  maxJsonDepth: 64,
  maxJsonItems: 1_000,
  allowedHosts: [],
  shutdownGrace: Duration.seconds(10),
  tracing: false,
  corsOrigins: []
}

/** A comma-separated list of secret keys (blank entries dropped); empty when unset. */
const keyList = (name: string) =>
  Config.redacted(name).pipe(
    Config.map((keys) => Redacted.value(keys).split(",").map((k) => k.trim()).filter((k) => k.length > 0)),
    Config.withDefault([] as ReadonlyArray<string>)
  )

/**
 * A push key is an API key with one more permission: when API keys guard the programmatic channels, the push
 * keys are accepted there too (with no API keys those channels are open anyway).
 */
export const normalize = (settings: HostConfigShape): HostConfigShape =>
  settings.apiKeys.length === 0 || settings.pushKeys.every((k) => settings.apiKeys.includes(k)) ?
    settings :
    { ...settings, apiKeys: [...new Set([...settings.apiKeys, ...settings.pushKeys])] }

export const config: Config.Config<HostConfigShape> = Config.all({
  port: Config.port("PORT").pipe(Config.withDefault(defaults.port)),
  host: Config.string("HOST").pipe(Config.withDefault(defaults.host)),
  trustIsolationHeaders: Config.boolean("AGENT_HOST_TRUST_ISOLATION_HEADERS").pipe(
    Config.withDefault(defaults.trustIsolationHeaders)
  ),
  maxBodyBytes: Config.integer("AGENT_HOST_MAX_BODY_BYTES").pipe(Config.withDefault(defaults.maxBodyBytes)),
  historyLimit: Config.integer("AGENT_HOST_HISTORY_LIMIT").pipe(Config.withDefault(defaults.historyLimit)),
  historyCacheBytes: Size.config("AGENT_HOST_HISTORY_CACHE_BYTES").pipe(
    Config.withDefault(defaults.historyCacheBytes)
  ),
  maxResponseTargets: Config.integer("AGENT_HOST_MAX_RESPONSE_TARGETS").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(defaults.maxResponseTargets)
  ),
  maxJsonDepth: Config.integer("AGENT_HOST_MAX_JSON_DEPTH").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(defaults.maxJsonDepth)
  ),
  maxJsonItems: Config.integer("AGENT_HOST_MAX_JSON_ITEMS").pipe(
    Config.validate({ message: "must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(defaults.maxJsonItems)
  ),
  allowedHosts: Config.string("AGENT_HOST_ALLOWED_HOSTS").pipe(
    Config.map((hosts) => hosts.split(",").map((h) => h.trim().toLowerCase()).filter((h) => h.length > 0)),
    Config.withDefault([] as ReadonlyArray<string>)
  ),
  shutdownGrace: Config.duration("AGENT_HOST_SHUTDOWN_GRACE").pipe(Config.withDefault(defaults.shutdownGrace)),
  tracing: Config.boolean("AGENT_HOST_TRACING").pipe(Config.withDefault(defaults.tracing)),
  corsOrigins: Config.string("AGENT_HOST_CORS_ORIGINS").pipe(
    Config.map((origins) => origins.split(",").map((o) => o.trim()).filter((o) => o.length > 0)),
    Config.mapOrFail((origins) => {
      const problem = origins.map(originProblem).find((p) => p !== undefined)
      return problem === undefined ? Either.right(origins) : Either.left(ConfigError.InvalidData([], problem))
    }),
    Config.withDefault([] as ReadonlyArray<string>)
  ),
  apiKeys: keyList("AGENT_HOST_API_KEYS"),
  adminKeys: keyList("AGENT_HOST_ADMIN_KEYS"),
  pushKeys: keyList("AGENT_HOST_PUSH_KEYS")
})

export const layer = (settings: Partial<HostConfigShape> = {}): Layer.Layer<HostConfig> =>
  Layer.succeed(HostConfig, normalize({ ...defaults, ...settings }))

/** Settings from the environment; `overrides` win. */
export const fromConfig = (
  overrides: Partial<HostConfigShape> = {}
): Effect.Effect<HostConfigShape, ConfigError.ConfigError> =>
  Effect.map(config, (settings) => normalize({ ...settings, ...overrides }))

/** `fromConfig` as a layer. */
export const layerConfig = (
  overrides: Partial<HostConfigShape> = {}
): Layer.Layer<HostConfig, ConfigError.ConfigError> => Layer.effect(HostConfig, fromConfig(overrides))
