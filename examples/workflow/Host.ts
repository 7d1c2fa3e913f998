/**
 * The example host composition: the "collect three answers" workflow as the target on the durable SQLite
 * engine in the host's state database (`AGENT_HOST_STATE_DIR/state.db`, default `.agent-host/state.db`), with the channels `npm start` enables.
 */
import { FetchHttpClient } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as HostConfig from "../../src/core/HostConfig.js"
import * as HostLayers from "../../src/core/HostLayers.js"
import * as Server from "../../src/Server.js"
import * as Persistence from "../../src/state/Persistence.js"
import * as WorkflowRecovery from "../../src/workflow/WorkflowRecovery.js"
import * as WorkflowTarget from "../../src/workflow/WorkflowTarget.js"
import * as CollectAnswers from "./CollectAnswers.js"

/**
 * State and engine together: the SQLite engine shares the host's state database (and its single-owner lock)
 * unless AGENT_HOST_STATE=memory, which uses the in-memory engine.
 */
export const layerStores = Layer.unwrapEffect(
  Effect.map(Persistence.config, (settings) =>
    Persistence.layerWith(settings, {
      sqlite: WorkflowTarget.layerEngineSql(),
      postgres: WorkflowTarget.layerEngineSql(),
      memory: WorkflowTarget.layerEngineMemory
    }))
)

/** The example workflow as the target; it needs an engine. */
export const layerTarget = CollectAnswers.layer.pipe(Layer.provide(FetchHttpClient.layer))

export const layerFromEnv = Layer.unwrapEffect(
  Effect.map(Server.channelsFromEnv, (channels) =>
    // Recovery sits above the host: it pushes endings whose turn is gone to channels that can push.
    WorkflowRecovery.layer().pipe(
      Layer.provideMerge(HostLayers.layerWithCore({ channels })),
      Layer.provide(FetchHttpClient.layer),
      Layer.provideMerge(layerTarget),
      Layer.provideMerge(layerStores),
      Layer.provide(HostConfig.layerConfig())
    ))
)
