/**
 * `npm start`: the host with the embedded default agent (or OpenAI when OPENAI_API_KEY is set) and every
 * channel the environment enables.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Server from "./Server.js"

NodeRuntime.runMain(Layer.launch(Server.layerFromEnv), { disablePrettyLogger: true })
