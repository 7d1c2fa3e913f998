/**
 * Who a request comes from, and where a reply may go.
 */
import { Schema } from "effect"
import { ChannelName, IsolationKey } from "./Ids.js"

/** A user as a channel knows them: `telegram` + chat id, `webchat` + browser id. */
export const ChannelIdentity = Schema.Struct({
  channel: ChannelName,
  nativeId: Schema.String,
  attributes: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})
export type ChannelIdentity = typeof ChannelIdentity.Type

export const identityToken = (identity: ChannelIdentity): string => `${identity.channel}:${identity.nativeId}`

/** The session a request belongs to. */
export const ChannelSession = Schema.Struct({
  isolationKey: IsolationKey,
  /**
   * The channel has just minted this key from the CSPRNG (a sessionless Invocations call, a fresh Responses
   * request): nothing can be stored under it, so the host skips looking its alias and history up.
   */
  fresh: Schema.optional(Schema.Boolean)
})
export type ChannelSession = typeof ChannelSession.Type

/** Where a reply goes: see docs/ARCHITECTURE.md, "Delivery". */
export const ResponseTargetKind = Schema.Literal(
  "originating",
  "active",
  "channels",
  "identities",
  "all_linked",
  "none"
)
export type ResponseTargetKind = typeof ResponseTargetKind.Type

export const ResponseTarget = Schema.Struct({
  kind: ResponseTargetKind,
  /** For `channels`: bare channel names, `channel:native_id`, or the pseudo-name `originating`. */
  targets: Schema.optional(Schema.Array(Schema.String)),
  /** For `identities`. */
  identities: Schema.optional(Schema.Array(ChannelIdentity)),
  /** Push the user's own message to the other destinations before the reply. */
  echoInput: Schema.optional(Schema.Boolean)
})
export type ResponseTarget = typeof ResponseTarget.Type

export const ResponseTargets = {
  originating: { kind: "originating" } as ResponseTarget,
  active: { kind: "active" } as ResponseTarget,
  allLinked: { kind: "all_linked" } as ResponseTarget,
  none: { kind: "none" } as ResponseTarget,
  channels: (targets: ReadonlyArray<string>, options?: { readonly echoInput?: boolean }): ResponseTarget => ({
    kind: "channels",
    targets,
    ...(options?.echoInput ? { echoInput: true } : {})
  }),
  identities: (
    identities: ReadonlyArray<ChannelIdentity>,
    options?: { readonly echoInput?: boolean }
  ): ResponseTarget => ({
    kind: "identities",
    identities,
    ...(options?.echoInput ? { echoInput: true } : {})
  })
} as const
