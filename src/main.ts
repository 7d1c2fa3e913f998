/**
 * `npm start`: the host with the embedded default agent (or OpenAI when OPENAI_API_KEY is set) and every
 * channel the environment enables, exporting OpenTelemetry when configured (see Telemetry). A startup that fails
 * for a reason (bad configuration, a port in use) prints one line to stderr and exits 1; a defect is logged with
 * its cause. `effect-agent-host serve` runs the same `Launch.launch`.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Launch from "./cli/Launch.js"
import * as Server from "./Server.js"

Launch.launch(Server.targetFromEnv).pipe(
  NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true })
)
