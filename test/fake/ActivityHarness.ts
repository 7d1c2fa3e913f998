/**
 * A real host with the Activity channel pointed at a FakeBotFramework, for the Activity tests.
 */
import { FetchHttpClient } from "@effect/platform"
import type { Layer } from "effect"
import { Context, Effect, Layer as LayerModule } from "effect"
import type { Options } from "../../src/channels/Activity/Activity.js"
import * as Activity from "../../src/channels/Activity/Activity.js"
import * as Agent from "../../src/core/Agent.js"
import type { AgentHostShape } from "../../src/core/AgentHost.js"
import { AgentHost } from "../../src/core/AgentHost.js"
import type { Channel } from "../../src/core/Channel.js"
import type { HostConfigShape } from "../../src/core/HostConfig.js"
import type { Turn } from "../../src/core/Target.js"
import type * as StateStore from "../../src/state/StateStore.js"
import * as TestHost from "../utils/TestHost.js"
import type { FakeBotFramework } from "./FakeBotFramework.js"
import * as Fake from "./FakeBotFramework.js"
import { echoAgent } from "./TelegramHarness.js"

export interface Harness {
  readonly fake: FakeBotFramework
  readonly host: AgentHostShape
  /** Every turn the agent received. */
  readonly turns: Array<Turn>
  /** Posts an activity with `token` (null: no header). */
  readonly post: (activity: unknown, token: string | null) => Effect.Effect<{ status: number; body: string }>
  /** Posts an activity with a valid token for it. */
  readonly send: (activity: unknown) => Effect.Effect<{ status: number; body: string }>
}

/** The channel's options for `fake` (its metadata, login URL and service URL allowlisted). */
export const channelOptions = (fake: FakeBotFramework, options: Partial<Options> = {}): Options => ({
  appId: Fake.APP_ID,
  password: Fake.APP_PASSWORD,
  tenantId: Fake.TENANT_ID,
  openIdMetadataUrl: fake.metadataUrl,
  loginUrl: fake.url,
  serviceUrls: [fake.url],
  stream: false,
  ...options
})

export interface StartOptions {
  readonly options?: Partial<Options>
  readonly agent?: (turns: Array<Turn>) => Agent.Agent
  readonly store?: Layer.Layer<StateStore.StateStore>
  readonly fake?: FakeBotFramework
  readonly extraChannels?: ReadonlyArray<Channel>
  readonly settings?: Partial<HostConfigShape>
}

export const start = (startOptions: StartOptions = {}) =>
  Effect.gen(function*() {
    const fake = startOptions.fake ?? (yield* Fake.make())
    const turns: Array<Turn> = []
    const agent = (startOptions.agent ?? echoAgent)(turns)
    const channel = Activity.make(channelOptions(fake, startOptions.options))
    const hostLayer = TestHost.layer({
      channels: [channel, ...(startOptions.extraChannels ?? [])],
      target: Agent.layer(agent),
      ...(startOptions.store === undefined ? {} : { store: startOptions.store }),
      ...(startOptions.settings === undefined ? {} : { settings: startOptions.settings })
    })
    const context = yield* LayerModule.build(LayerModule.provide(hostLayer, FetchHttpClient.layer)).pipe(Effect.orDie)
    const host = Context.get(context, AgentHost)
    const post = (activity: unknown, token: string | null) => Fake.post(host.url, activity, token)
    const harness: Harness = {
      fake,
      host,
      turns,
      post,
      send: (activity) => Effect.flatMap(fake.sign(), (token) => post(activity, token))
    }
    return harness
  })
