/**
 * The authorization seam every turn passes through before the target runs. `layerAllowAll` lets everyone in;
 * `Authorization` (allowlists, identity linking) provides the real decision.
 */
import { Context, Effect, Layer } from "effect"
import type { ChannelRequest } from "../domain/ChannelRequest.js"
import type { HostConfigurationError } from "../domain/Errors.js"
import type { AccessDenied, LinkRequiredError } from "../domain/Errors.js"

export interface AuthorizerShape {
  /**
   * Decides whether `request` may run. On success returns the request to run, possibly with the isolation key
   * the caller's identity is registered under; fails with AccessDenied or LinkRequiredError otherwise.
   */
  readonly authorize: (request: ChannelRequest) => Effect.Effect<ChannelRequest, AccessDenied | LinkRequiredError>
  /** Startup validation: fails when a configuration would deny silently. */
  readonly validate: (
    channels: ReadonlyArray<string>
  ) => Effect.Effect<void, HostConfigurationError>
}

export class Authorizer extends Context.Tag("effect-agent-host/Authorizer")<Authorizer, AuthorizerShape>() {}

export const allowAll: AuthorizerShape = {
  authorize: Effect.succeed,
  validate: () => Effect.void
}

export const layerAllowAll: Layer.Layer<Authorizer> = Layer.succeed(Authorizer, allowAll)
