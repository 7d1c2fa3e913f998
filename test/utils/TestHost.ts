/**
 * Starts the real host on 127.0.0.1 with an ephemeral port, for tests (see `HostLayers.layerTest`).
 */
import type { Layer } from "effect"
import type { Channel } from "../../src/core/Channel.js"
import type { HostConfigShape } from "../../src/core/HostConfig.js"
import * as HostLayers from "../../src/core/HostLayers.js"
import type { Target } from "../../src/core/Target.js"
import type * as StateStore from "../../src/state/StateStore.js"

export interface Options<E, R, TE = never, TR = never> {
  readonly channels: ReadonlyArray<Channel<E, R>>
  /** The target; it may need services of its own (an engine, a fake upstream) provided by the test. */
  readonly target?: Layer.Layer<Target, TE, TR>
  readonly store?: Layer.Layer<StateStore.StateStore>
  readonly settings?: Partial<HostConfigShape>
}

/** The host with core services, the default agent (or `target`), memory state (or `store`), port 0. */
export const layer = <E, R, TE = never, TR = never>(options: Options<E, R, TE, TR>) => HostLayers.layerTest(options)
