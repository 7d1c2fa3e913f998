/**
 * Runs the host like `src/main.ts`, with the "collect three answers" workflow on the SQLite engine:
 * `npx tsx examples/workflow/main.ts` (then `POST /invocations` with a `session_id`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as Server from "../../src/Server.js"
import * as Host from "./Host.js"

Layer.launch(Host.layerFromEnv).pipe(
  Effect.provide(Server.layerLogging),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
