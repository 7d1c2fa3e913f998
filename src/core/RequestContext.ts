/**
 * The context of the turn being run, readable by the agent stack for the whole turn (streaming included):
 * the isolation keys, the response ids, who asked and through which channel.
 */
import type { Option } from "effect"
import { Context, Effect } from "effect"
import type { ChannelIdentity } from "../domain/Identity.js"

export interface IsolationKeys {
  /** `x-agent-user-isolation-key`, only when the host trusts isolation headers. */
  readonly user: string | undefined
  /** `x-agent-chat-isolation-key`, only when the host trusts isolation headers. */
  readonly chat: string | undefined
}

export const noIsolationKeys: IsolationKeys = { user: undefined, chat: undefined }

export interface RequestContextValue {
  readonly channel: string
  readonly operation: string
  /** The session's isolation key (the actor key), when the turn has a session. */
  readonly sessionKey: string | undefined
  readonly isolation: IsolationKeys
  readonly responseId: string | undefined
  readonly previousResponseId: string | undefined
  readonly identity: ChannelIdentity | undefined
  /**
   * What authorization verified about the caller (an identity provider's signed claims: email, groups, ...), and
   * where from; absent when nothing was verified. Never taken from the request's text or a channel's guess.
   */
  readonly verified?: VerifiedCaller
}

/** Claims authorization verified: from the identity linker, or from a channel that authenticates callers. */
export interface VerifiedCaller {
  readonly claims: Readonly<Record<string, string | ReadonlyArray<string>>>
  readonly source: "linker" | "channel"
}

export class RequestContext extends Context.Tag("effect-agent-host/RequestContext")<
  RequestContext,
  RequestContextValue
>() {}

/** The current turn's context, if the caller runs inside one. */
export const current: Effect.Effect<Option.Option<RequestContextValue>> = Effect.serviceOption(RequestContext)
