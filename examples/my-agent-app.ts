/**
 * Example 1: your own Effect app hosting your own agent.
 *
 * Run it: `npx tsx examples/my-agent-app.ts`, then
 * `curl -s localhost:8000/invocations -H 'content-type: application/json' -d '{"message":"hello"}'`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Agent from "../src/core/Agent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import { textOf } from "../src/domain/Content.js"
import * as StateStore from "../src/state/StateStore.js"

/** A tiny agent: answers in upper case, and knows how many turns the session has had. */
export const shoutingAgent = Agent.make({
  name: "shouter",
  run: (turn) =>
    Effect.succeed({
      messages: [{
        role: "assistant",
        contents: [{
          _tag: "text",
          text: `${textOf(turn.input.at(-1)?.contents ?? []).toUpperCase()} (turn ${turn.history.length / 2 + 1})`
        }]
      }]
    })
})

/** The app: the host with the Invocations channel, your agent and in-memory state; it needs a HostConfig. */
export const AppLive = HostLayers.layerWithCore({ channels: [Invocations.make()] }).pipe(
  Layer.provide(Agent.layer(shoutingAgent)),
  Layer.provide(StateStore.layerMemory)
)

if (import.meta.url === `file://${process.argv[1]}`) {
  NodeRuntime.runMain(Layer.launch(AppLive.pipe(Layer.provide(HostConfig.layerConfig()))), {
    disablePrettyLogger: true
  })
}
