/**
 * Runs the host like `src/main.ts`, with the "collect three answers" workflow on the SQLite engine:
 * `npx tsx examples/workflow/main.ts` (then `POST /invocations` with a `session_id`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Host from "./Host.js"

NodeRuntime.runMain(Layer.launch(Host.layerFromEnv), { disablePrettyLogger: true })
