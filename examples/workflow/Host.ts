/**
 * The example host composition: the "collect three answers" workflow as the target on the durable SQLite
 * engine (`AGENT_HOST_STATE_DIR/state.db`, default `.agent-host/state.db`), with the channels `npm start` enables.
 */
import { FetchHttpClient, FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Config, Effect, Layer } from "effect"
import * as Path from "node:path"
import * as AgentHost from "../../src/AgentHost.js"
import * as HostConfig from "../../src/HostConfig.js"
import * as Server from "../../src/Server.js"
import * as StateStore from "../../src/StateStore.js"
import * as WorkflowTarget from "../../src/WorkflowTarget.js"
import * as CollectAnswers from "./CollectAnswers.js"

/** The state database: the SQLite file the durable engine keeps executions in. */
export const layerStateDb = Layer.unwrapEffect(Effect.gen(function*() {
  const dir = yield* Config.string("AGENT_HOST_STATE_DIR").pipe(Config.withDefault(".agent-host"))
  const fs = yield* FileSystem.FileSystem
  yield* Effect.orDie(fs.makeDirectory(dir, { recursive: true }))
  return SqliteClient.layer({ filename: Path.join(dir, "state.db") })
})).pipe(Layer.provide(NodeFileSystem.layer))

/** The example workflow as the target, on the SQLite engine. */
export const layerTarget = CollectAnswers.layer.pipe(
  Layer.provide(WorkflowTarget.layerEngineSql()),
  Layer.provide(layerStateDb),
  Layer.provide(FetchHttpClient.layer)
)

export const layerFromEnv = Layer.unwrapEffect(
  Effect.map(Server.channelsFromEnv, (channels) =>
    AgentHost.layerWithCore({ channels }).pipe(
      Layer.provide(layerTarget),
      Layer.provide(StateStore.layerMemory),
      Layer.provide(HostConfig.layerConfig())
    ))
).pipe(Layer.provide(Server.layerLogging))
