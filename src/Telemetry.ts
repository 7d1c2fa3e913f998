/**
 * OpenTelemetry export, configured by the standard `OTEL_*` environment variables: traces, metrics and logs go
 * over OTLP/HTTP (JSON) to `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces`, `/v1/metrics`, `/v1/logs` appended) or
 * to the per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` (used as given), with
 * `OTEL_EXPORTER_OTLP_HEADERS` (and per-signal headers), `OTEL_SERVICE_NAME` (default `effect-agent-host`),
 * `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none`
 * to turn one signal off and `OTEL_SDK_DISABLED=true` to turn all off.
 *
 * Zero cost when no endpoint is set: the SDK (`internal/OtelSdk`) is imported only then, so the host's startup
 * does not load it. Spans need `AGENT_HOST_TRACING`, which defaults to on when traces are exported.
 */
import type { Resource } from "@effect/opentelemetry/Resource"
import type { ConfigError } from "effect"
import { Config, Duration, Effect, Either, Layer, Option } from "effect"
import * as ConfigErrorModule from "effect/ConfigError"

/** Where one signal goes. Header values are secrets (API tokens): never logged. */
export interface OtlpEndpoint {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
}

export interface OtlpSettings {
  readonly serviceName: string
  readonly traces: Option.Option<OtlpEndpoint>
  readonly metrics: Option.Option<OtlpEndpoint>
  readonly logs: Option.Option<OtlpEndpoint>
  /** How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s). */
  readonly metricInterval: Duration.Duration
}

type Signal = "traces" | "metrics" | "logs"

const nonEmpty = (name: string) =>
  Config.string(name).pipe(
    Config.option,
    Config.map(Option.filter((value) => value.trim() !== "")),
    Config.map(Option.map((value) => value.trim()))
  )

/** `key=value,key2=value2`, values percent-decoded (the OTel spec's format); an entry without `=` is an error. */
const headerList = (name: string) =>
  nonEmpty(name).pipe(
    Config.mapOrFail((raw) => {
      const headers: Record<string, string> = {}
      if (Option.isNone(raw)) return Either.right(headers)
      for (const entry of raw.value.split(",")) {
        if (entry.trim() === "") continue
        const eq = entry.indexOf("=")
        const key = eq === -1 ? "" : entry.slice(0, eq).trim()
        if (key === "") {
          return Either.left(
            ConfigErrorModule.InvalidData([name], "must be a comma-separated list of key=value pairs")
          )
        }
        let value = entry.slice(eq + 1).trim()
        try {
          value = decodeURIComponent(value)
        } catch {
          // Not percent-encoded: taken as written.
        }
        headers[key] = value
      }
      return Either.right(headers)
    })
  )

/** A base endpoint with the signal's path appended, as the spec says (`…/v1/traces`). */
const withPath = (base: string, signal: Signal) => `${base.endsWith("/") ? base : `${base}/`}v1/${signal}`

const validUrl = (name: string, url: string) => {
  try {
    const parsed = new URL(url)
    if (parsed.protocol === "http:" || parsed.protocol === "https:") return Either.right(url)
  } catch {
    // Reported below.
  }
  return Either.left(ConfigErrorModule.InvalidData([name], "must be an http:// or https:// URL"))
}

interface SignalSettings {
  readonly own: Option.Option<string>
  readonly headers: Readonly<Record<string, string>>
  readonly exporter: Option.Option<string>
}

const signalConfig = (signalName: Signal): Config.Config<SignalSettings> => {
  const upper = signalName.toUpperCase()
  return Config.all({
    own: nonEmpty(`OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`),
    headers: headerList(`OTEL_EXPORTER_OTLP_${upper}_HEADERS`),
    exporter: nonEmpty(`OTEL_${upper}_EXPORTER`)
  })
}

// A signal's endpoint: its own, else the base one with its path; none when `OTEL_<SIGNAL>_EXPORTER=none`.
const endpointOf = (
  signalName: Signal,
  settings: SignalSettings,
  base: Option.Option<string>,
  common: Readonly<Record<string, string>>
): Either.Either<Option.Option<OtlpEndpoint>, ConfigError.ConfigError> => {
  const { exporter, headers, own } = settings
  if (Option.isSome(exporter) && exporter.value.toLowerCase() === "none") return Either.right(Option.none())
  const endpointName = `OTEL_EXPORTER_OTLP_${signalName.toUpperCase()}_ENDPOINT`
  const url = Option.isSome(own) ?
    Option.some([endpointName, own.value] as const) :
    Option.map(base, (b) => ["OTEL_EXPORTER_OTLP_ENDPOINT", withPath(b, signalName)] as const)
  if (Option.isNone(url)) return Either.right(Option.none())
  return Either.map(
    validUrl(url.value[0], url.value[1]),
    (valid) => Option.some({ url: valid, headers: { ...common, ...headers } })
  )
}

/** The export settings from the environment; none when no endpoint is set (or `OTEL_SDK_DISABLED=true`). */
export const config: Config.Config<Option.Option<OtlpSettings>> = Config.all({
  disabled: Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  base: nonEmpty("OTEL_EXPORTER_OTLP_ENDPOINT"),
  headers: headerList("OTEL_EXPORTER_OTLP_HEADERS"),
  serviceName: nonEmpty("OTEL_SERVICE_NAME"),
  interval: Config.integer("OTEL_METRIC_EXPORT_INTERVAL").pipe(
    Config.validate({ message: "must be a positive number of milliseconds", validation: (n) => n > 0 }),
    Config.withDefault(60_000)
  ),
  traces: signalConfig("traces"),
  metrics: signalConfig("metrics"),
  logs: signalConfig("logs")
}).pipe(
  Config.mapOrFail((raw) => {
    if (raw.disabled) return Either.right(Option.none())
    return Either.all({
      traces: endpointOf("traces", raw.traces, raw.base, raw.headers),
      metrics: endpointOf("metrics", raw.metrics, raw.base, raw.headers),
      logs: endpointOf("logs", raw.logs, raw.base, raw.headers)
    }).pipe(
      Either.map(({ logs, metrics, traces }) =>
        Option.isNone(traces) && Option.isNone(metrics) && Option.isNone(logs) ?
          Option.none() :
          Option.some({
            serviceName: Option.getOrElse(raw.serviceName, () => "effect-agent-host"),
            traces,
            metrics,
            logs,
            metricInterval: Duration.millis(raw.interval)
          })
      )
    )
  })
)

// Without an endpoint nothing is exported, so the other variables are not read: a start reads 4 variables here,
// not 16 (each a few dozen Effect steps of a still-cold interpreter, twice per start; see docs/PERFORMANCE.md).
const anyEndpoint = Config.map(
  Config.all([
    nonEmpty("OTEL_EXPORTER_OTLP_ENDPOINT"),
    nonEmpty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    nonEmpty("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
    nonEmpty("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
  ]),
  (endpoints) => endpoints.some(Option.isSome)
)

/**
 * `config`, read only when an OTLP endpoint is set: none otherwise (what `config` gives then too, without
 * checking variables that would not be used).
 */
export const settingsFromEnv: Effect.Effect<Option.Option<OtlpSettings>, ConfigError.ConfigError> = Effect.flatMap(
  anyEndpoint,
  (any) => any ? config : Effect.succeedNone
)

/**
 * Whether traces will be exported: the default of `AGENT_HOST_TRACING` (spans cost nothing unless someone
 * receives them).
 */
export const tracesExported: Effect.Effect<boolean, ConfigError.ConfigError> = Effect.map(
  settingsFromEnv,
  (settings) => Option.isSome(settings) && Option.isSome(settings.value.traces)
)

/**
 * The export layer for `settings`: the OpenTelemetry SDK (imported now, not before) with OTLP/HTTP exporters,
 * Effect's tracer, a metric reader over Effect's metric registry and a logger feeding OTel logs. Provide it
 * under the host (as `main` does), so the host's request handler runs with its tracer.
 */
export const layer = (settings: OtlpSettings): Layer.Layer<Resource> =>
  Layer.unwrapEffect(
    Effect.map(Effect.promise(() => import("./internal/OtelSdk.js")), (sdk) => sdk.layer(settings))
  )

/** `layer` configured from the environment; nothing at all (no import) when no OTLP endpoint is set. */
export const layerFromEnv: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(
    settingsFromEnv,
    // The SDK's Resource service is an implementation detail of the export: not part of this layer's type.
    (settings): Layer.Layer<never> =>
      Option.isSome(settings) ? layer(settings.value) as Layer.Layer<never> : Layer.empty
  )
)
