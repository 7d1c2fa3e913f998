/**
 * The registry of built channels: their contributions (hooks, push, policy), by name. Filled by the host
 * while it builds channels; read by turns and delivery.
 */
import type { Duration } from "effect"
import { Context, Deferred, Effect, FiberId, Layer, Option } from "effect"
import type { ChannelContribution } from "./Channel.js"

export interface RegisteredChannel {
  readonly name: string
  readonly contribution: ChannelContribution
}

export interface ChannelsShape {
  readonly register: (channel: RegisteredChannel) => Effect.Effect<void>
  /** Synchronous lookup: used per turn on the hot path. */
  readonly unsafeGet: (name: string) => RegisteredChannel | undefined
  readonly all: Effect.Effect<ReadonlyArray<RegisteredChannel>>
  /**
   * Completes once the host has registered every channel it builds: a lookup that finds nothing before then (a
   * push resumed while the host still builds) waits for this instead of polling.
   */
  readonly registered: Effect.Effect<void>
  /** Called by the host after the last `register`. */
  readonly markRegistered: Effect.Effect<void>
  /**
   * The channel named `name`; when it is not registered yet, after waiting (at most `wait`) for the host to have
   * registered every channel: for work that may start while the host still builds (resumed or redelivered pushes).
   */
  readonly whenRegistered: (name: string, wait: Duration.Duration) => Effect.Effect<Option.Option<RegisteredChannel>>
}

export class Channels extends Context.Tag("effect-agent-host/Channels")<Channels, ChannelsShape>() {}

export const make = (): ChannelsShape => {
  const registry = new Map<string, RegisteredChannel>()
  const registered = Deferred.unsafeMake<void>(FiberId.none)
  return {
    register: (channel) => Effect.sync(() => void registry.set(channel.name, channel)),
    unsafeGet: (name) => registry.get(name),
    all: Effect.sync(() => [...registry.values()]),
    registered: Deferred.await(registered),
    markRegistered: Effect.asVoid(Deferred.succeed(registered, undefined)),
    whenRegistered: (name, wait) =>
      Effect.suspend(() => {
        const channel = registry.get(name)
        if (channel !== undefined) return Effect.succeed(Option.some(channel))
        return Deferred.await(registered).pipe(
          Effect.timeout(wait),
          Effect.ignore,
          Effect.map(() => Option.fromNullable(registry.get(name)))
        )
      })
  }
}

export const layer: Layer.Layer<Channels> = Layer.sync(Channels, make)
