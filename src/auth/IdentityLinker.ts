/**
 * Identity linking: from a channel identity to the person behind it (their shared isolation key and verified
 * claims), or a challenge the person must complete first (a sign-in URL, a one-time code). `OidcLinker`
 * (`layerOidc`) is the OpenID Connect implementation; `layerNone` says no linker is configured.
 */
import type { Option } from "effect"
import { Context, Effect, Layer } from "effect"
import type { ChannelLinking, Route } from "../core/Channel.js"
import type { ChannelIdentity } from "../domain/Identity.js"
import type { EpochMillis } from "../domain/Time.js"
import type { ClaimSource, VerifiedClaims } from "./Allowlist.js"

/** What the caller must do before they are let in. */
export interface LinkChallenge {
  readonly _tag: "LinkChallenge"
  readonly challengeId: string
  /** Where to complete it. */
  readonly url?: string
  readonly expiresAt?: EpochMillis
  /** Short text for the user; a default is used when absent. */
  readonly message?: string
}

/** A linked identity: the key the person's channels share, and what the linker verified about them. */
export interface LinkedIdentity {
  readonly _tag: "LinkedIdentity"
  readonly isolationKey: string
  readonly verifiedClaims: VerifiedClaims
  readonly claimSource: Exclude<ClaimSource, "none">
}

export type LinkResolution = LinkedIdentity | LinkChallenge

export interface IdentityLinkerShape {
  /** False for `none`: validation then rejects setups that need a linker. */
  readonly available: boolean
  readonly resolve: (identity: ChannelIdentity) => Effect.Effect<LinkResolution>
  /**
   * The key a linked identity shares with the person's other identities, without challenging anyone (none when
   * it is not linked, or its link keeps its own key). Absent when links never share keys: nothing to look up.
   */
  readonly sharedKey?: (identity: ChannelIdentity) => Effect.Effect<Option.Option<string>>
  /** What channels may do with links (`/link`, `/unlink`, `/whoami`); absent for resolve-only linkers. */
  readonly linking?: ChannelLinking
  /** HTTP routes that complete a link (the sign-in callback), mounted by the host under `path`. */
  readonly routes?: { readonly path: string; readonly routes: ReadonlyArray<Route> }
}

export class IdentityLinker extends Context.Tag("effect-agent-host/IdentityLinker")<
  IdentityLinker,
  IdentityLinkerShape
>() {}

export const none: IdentityLinkerShape = {
  available: false,
  resolve: () => Effect.dieMessage("no identity linker is configured")
}

/** A linker from a resolve function. */
export const make = (resolve: IdentityLinkerShape["resolve"]): IdentityLinkerShape => ({ available: true, resolve })

/** No linker: sign-in cannot be required, and claim-based allowlists need claims from the channel. */
export const layerNone: Layer.Layer<IdentityLinker> = Layer.succeed(IdentityLinker, none)

export const layer = (resolve: IdentityLinkerShape["resolve"]): Layer.Layer<IdentityLinker> =>
  Layer.succeed(IdentityLinker, make(resolve))

export const linked = (
  isolationKey: string,
  verifiedClaims: VerifiedClaims = {},
  claimSource: LinkedIdentity["claimSource"] = "linker"
): LinkedIdentity => ({ _tag: "LinkedIdentity", isolationKey, verifiedClaims, claimSource })

export const challenge = (fields: Omit<LinkChallenge, "_tag">): LinkChallenge => ({ _tag: "LinkChallenge", ...fields })
