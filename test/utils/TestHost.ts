/**
 * Starts the real host on 127.0.0.1 with an ephemeral port, for tests (see `AgentHost.layerTest`).
 */
import type { Layer } from "effect"
import * as AgentHost from "../../src/AgentHost.js"
import type { Channel } from "../../src/Channel.js"
import type { HostConfigShape } from "../../src/HostConfig.js"
import type * as StateStore from "../../src/StateStore.js"
import type { Target } from "../../src/Target.js"

export interface Options<E, R> {
  readonly channels: ReadonlyArray<Channel<E, R>>
  readonly target?: Layer.Layer<Target>
  readonly store?: Layer.Layer<StateStore.StateStore>
  readonly settings?: Partial<HostConfigShape>
}

/** The host with core services, the default agent (or `target`), memory state (or `store`), port 0. */
export const layer = <E, R>(options: Options<E, R>) => AgentHost.layerTest(options)
