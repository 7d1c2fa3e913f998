/**
 * `npm start`: the host with the embedded default agent (or OpenAI when OPENAI_API_KEY is set) and every
 * channel the environment enables.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as Server from "./Server.js"

Layer.launch(Server.layerFromEnv).pipe(
  Effect.provide(Server.layerLogging),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
