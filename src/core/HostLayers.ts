/**
 * The layers that assemble a host: the core services under `AgentHost.layer` (`layerCoreWith`, `layerCore`),
 * the host with them (`layerWithCore`), and the host for tests (`layerTest`).
 */
import type { ConfigError, Scope } from "effect"
import { Context, Effect, Layer } from "effect"
import * as Authorization from "../auth/Authorization.js"
import type { Authorizer } from "../auth/Authorizer.js"
import * as Delivery from "../delivery/Delivery.js"
import type { StateStore } from "../state/StateStore.js"
import * as StateStoreModule from "../state/StateStore.js"
import * as AgentHost from "./AgentHost.js"
import type { Channel } from "./Channel.js"
import * as Channels from "./Channels.js"
import * as DefaultAgent from "./DefaultAgent.js"
import type { HostConfig } from "./HostConfig.js"
import * as HostConfigModule from "./HostConfig.js"
import * as Sessions from "./Sessions.js"
import type { Target } from "./Target.js"
import * as Turns from "./Turns.js"

/**
 * Core services: sessions from config, delivery, and the given authorization (`Authorization.layer(config)`,
 * default: from the environment) and push scheduler (`DurablePush.layerSqlite` / `layerMemory`, default: in
 * process), built in order in the caller's scope: channels, authorization, sessions, pushes, delivery, turns, each
 * seeing the services before it (what a chain of `provideMerge`s builds, in one step instead of ~30 memoised layer
 * builds: see docs/PERFORMANCE.md, cold start). The given layers are built on the current memo map, so a layer
 * shared with the rest of the application is still built once. Provide `Target`, `StateStore` and `HostConfig`.
 */
export const buildCoreWith = <AE = never, AR = never, POut = never, PE = never, PR = never>(options: {
  readonly authorization?: Layer.Layer<Authorizer, AE, AR>
  readonly push?: Layer.Layer<Delivery.PushScheduler | POut, PE, PR>
}): Effect.Effect<
  Context.Context<
    Turns.Turns | Channels.Channels | Authorizer | Sessions.Sessions | Delivery.Delivery | Delivery.PushScheduler | POut
  >,
  ConfigError.ConfigError | AE | PE,
  Target | StateStore | HostConfig | Scope.Scope | Exclude<AR | PR, Channels.Channels | StateStore>
> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const memoMap = yield* Layer.CurrentMemoMap
    let context: Context.Context<any> = Context.make(Channels.Channels, Channels.make())
    const build = <ROut, E, RIn>(layer: Layer.Layer<ROut, E, RIn>) =>
      Effect.map(Effect.provide(Layer.buildWithMemoMap(layer, memoMap, scope), context), (built) => {
        context = Context.merge(context, built)
      })
    yield* build((options.authorization ?? Authorization.layerConfig) as Layer.Layer<Authorizer, AE, AR>)
    const sessions = yield* Effect.provide(Effect.flatMap(Sessions.config, Sessions.make), context)
    context = Context.add(context, Sessions.Sessions, sessions)
    yield* build(
      (options.push ?? Delivery.layerPushInProcess) as Layer.Layer<Delivery.PushScheduler | POut, PE, PR>
    )
    context = Context.add(context, Delivery.Delivery, yield* Effect.provide(Delivery.make, context))
    context = Context.add(context, Turns.Turns, yield* Effect.provide(Turns.make, context))
    return context
  }) as never

/** `buildCoreWith` as a layer. */
export const layerCoreWith = <AE = never, AR = never, POut = never, PE = never, PR = never>(options: {
  readonly authorization?: Layer.Layer<Authorizer, AE, AR>
  readonly push?: Layer.Layer<Delivery.PushScheduler | POut, PE, PR>
}): Layer.Layer<
  Turns.Turns | Channels.Channels | Authorizer | Sessions.Sessions | Delivery.Delivery | Delivery.PushScheduler | POut,
  ConfigError.ConfigError | AE | PE,
  Target | StateStore | HostConfig | Exclude<AR | PR, Channels.Channels | StateStore>
> => Layer.scopedContext(buildCoreWith(options))

/** Core services with their defaults: authorization from the environment, in-process pushes. */
export const layerCore: Layer.Layer<
  Turns.Turns | Channels.Channels | Authorizer | Sessions.Sessions | Delivery.Delivery | Delivery.PushScheduler,
  ConfigError.ConfigError,
  Target | StateStore | HostConfig
> = layerCoreWith({})

/** `layer` with `layerCore` under it. */
export const layerWithCore = <E, R>(options: AgentHost.Options<E, R>) =>
  AgentHost.layer(options).pipe(Layer.provideMerge(layerCore))

/**
 * The host for tests: real HTTP on 127.0.0.1 with an ephemeral port, core services, in-memory state, and the
 * default agent unless you pass your own target. Substitute any of them.
 */
export const layerTest = <E, R, TE = never, TR = never>(options: {
  readonly channels: ReadonlyArray<Channel<E, R>>
  /** The target; it may need services of its own (an engine, a fake upstream). */
  readonly target?: Layer.Layer<Target, TE, TR>
  readonly store?: Layer.Layer<StateStore>
  readonly settings?: Partial<HostConfig["Type"]>
}) =>
  layerWithCore({ channels: options.channels }).pipe(
    Layer.provide(options.target ?? DefaultAgent.layer),
    Layer.provide(options.store ?? StateStoreModule.layerMemory),
    Layer.provide(HostConfigModule.layer({ port: 0, host: "127.0.0.1", ...options.settings }))
  )
