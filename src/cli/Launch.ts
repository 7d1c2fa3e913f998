/**
 * The host as `npm start` runs it (src/main.ts) and `effect-agent-host serve` runs it: `Server.layerFromEnvWith`
 * the target, under logging and OpenTelemetry (when configured). A startup that fails for a reason (bad
 * configuration, a port in use, a locked state dir) prints one line to stderr and fails with `StartupFailed`; a
 * defect is logged with its cause. One composition for both entry points, so they cannot drift apart.
 */
import type { Layer } from "effect"
import { Cause, Effect, Layer as LayerModule, Option, Schema } from "effect"
import type { Target } from "../core/Target.js"
import * as StartupError from "../internal/StartupError.js"
import { tuneForServer } from "../internal/V8Tuning.js"
import * as Server from "../Server.js"

/** The host did not start (or stopped on an error); what went wrong was already printed or logged. */
export class StartupFailed extends Schema.TaggedError<StartupFailed>()("StartupFailed", {
  message: Schema.String
}) {}

/**
 * Runs the host with `target` until interrupted (SIGINT/SIGTERM through the runtime); once it has started (the
 * layer built: listening), the server's V8 settings (`internal/V8Tuning`).
 */
export const launch = <E>(target: Layer.Layer<Target, E>): Effect.Effect<never, StartupFailed> =>
  Effect.scoped(
    Effect.zipRight(
      LayerModule.build(Server.layerFromEnvWith(target)),
      Effect.zipRight(Effect.sync(tuneForServer), Effect.never)
    )
  ).pipe(
    // Under the host: its request handler runs with the exporting tracer (when OTEL_EXPORTER_OTLP_ENDPOINT is set).
    Effect.provide(Server.layerLoggingAndTelemetry),
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
      const line = StartupError.describeCause(cause)
      const report = Option.isSome(line) ?
        Effect.sync(() => process.stderr.write(`${line.value}\n`)) :
        Effect.logError("the host failed", cause)
      return Effect.zipRight(
        report,
        Effect.fail(new StartupFailed({ message: Option.getOrElse(line, () => "the host failed") }))
      )
    })
  )
