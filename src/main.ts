/**
 * `npm start`: the host with the embedded default agent (or OpenAI when OPENAI_API_KEY is set) and every
 * channel the environment enables, exporting OpenTelemetry when configured (see Telemetry). A startup that fails
 * for a reason (bad configuration, a port in use) prints one line to stderr and exits 1; a defect is logged with
 * its cause.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Layer, Option } from "effect"
import * as StartupError from "./internal/StartupError.js"
import * as Server from "./Server.js"
import * as Telemetry from "./Telemetry.js"

Layer.launch(Server.layerFromEnv).pipe(
  // Under the host: its request handler runs with the exporting tracer (when OTEL_EXPORTER_OTLP_ENDPOINT is set).
  Effect.provide(Layer.provideMerge(Telemetry.layerFromEnv, Server.layerLogging)),
  Effect.tapErrorCause((cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.void
    const line = StartupError.describeCause(cause)
    return Option.isSome(line) ?
      Effect.sync(() => process.stderr.write(`${line.value}\n`)) :
      Effect.logError("the host failed", cause)
  }),
  NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true })
)
