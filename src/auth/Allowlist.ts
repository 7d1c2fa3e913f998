/**
 * Allowlists: who may talk to the agent. An allowlist answers allow, deny or abstain for one identity in one
 * phase (before or after account linking). Abstain means "no information yet" and is never a denial by itself:
 * `Authorization` decides what an abstention leads to (linking, or letting the request through).
 *
 * `anyOf` / `allOf` are Kleene's three-valued or / and: allow and deny are true and false, abstain is unknown.
 */
import { Deferred, Effect, FiberId } from "effect"
import type { ChannelIdentity } from "../domain/Identity.js"

export type AllowlistDecision = "allow" | "deny" | "abstain"

/** A verified claim's value: a string, or several (groups, roles). */
export type ClaimValue = string | ReadonlyArray<string>
export type VerifiedClaims = Readonly<Record<string, ClaimValue>>

/** `pre_link`: only the channel identity is known. `post_link`: verified claims are known too. */
export type AuthorizationPhase = "pre_link" | "post_link"

/** Where verified claims came from: the identity linker, the channel itself, or nowhere. */
export type ClaimSource = "linker" | "channel" | "none"

/** What an allowlist sees. */
export interface AuthorizationContext {
  readonly identity: ChannelIdentity
  readonly phase: AuthorizationPhase
  /** The isolation key the request would run under. */
  readonly isolationKey: string | undefined
  readonly verifiedClaims: VerifiedClaims
  readonly claimSource: ClaimSource
}

export interface AllowAll {
  readonly _tag: "AllowAll"
}

export interface DenyAll {
  readonly _tag: "DenyAll"
}

/** Everyone on one channel; abstains for the others. */
export interface ChannelMembers {
  readonly _tag: "ChannelMembers"
  readonly channel: string
}

export interface NativeIds {
  readonly _tag: "NativeIds"
  /** When set, identities of other channels get abstain. */
  readonly channel: string | undefined
  /** The ids; a loader's result is cached after its first success. */
  readonly ids: Effect.Effect<ReadonlySet<string>>
}

export interface LinkedClaim {
  readonly _tag: "LinkedClaim"
  readonly claim: string
  readonly values: ReadonlySet<string>
}

export interface AnyOf {
  readonly _tag: "AnyOf"
  readonly children: ReadonlyArray<Allowlist>
}

export interface AllOf {
  readonly _tag: "AllOf"
  readonly children: ReadonlyArray<Allowlist>
}

export interface Custom {
  readonly _tag: "Custom"
  readonly evaluate: (context: AuthorizationContext) => Effect.Effect<AllowlistDecision>
  readonly requiresLinkedClaims: boolean
}

export type Allowlist = AllowAll | DenyAll | ChannelMembers | NativeIds | LinkedClaim | AnyOf | AllOf | Custom

/** Allows everyone, in both phases. */
export const allowAll: Allowlist = { _tag: "AllowAll" }

/** Denies everyone, in both phases: a closed channel. */
export const denyAll: Allowlist = { _tag: "DenyAll" }

/** Allows everyone on `channel`; abstains for identities of other channels. */
export const channelMembers = (channel: string): Allowlist => ({ _tag: "ChannelMembers", channel })

const cachedLoader = (loader: Effect.Effect<Iterable<string>>): Effect.Effect<ReadonlySet<string>> => {
  // One load at a time; concurrent callers share it. A failed load is not cached, so the next call retries.
  // Not effect's `Cache`: it can only be made in an effect, and `nativeIds` is a plain constructor (allowlists are
  // values, built in config and user code); see docs/PERFORMANCE.md "Caches".
  let current: Deferred.Deferred<ReadonlySet<string>> | undefined
  return Effect.suspend(() => {
    if (current !== undefined) return Deferred.await(current)
    const deferred = Deferred.unsafeMake<ReadonlySet<string>>(FiberId.none)
    current = deferred
    return loader.pipe(
      Effect.map((ids): ReadonlySet<string> => new Set(ids)),
      Effect.exit,
      Effect.flatMap((exit) => {
        if (exit._tag === "Failure") current = undefined
        return Deferred.done(deferred, exit)
      }),
      Effect.uninterruptible,
      Effect.zipRight(Deferred.await(deferred))
    )
  })
}

/**
 * Allows identities whose native id is listed, denies the others. `ids` is a collection or an effect that
 * loads one (run once, on first use). With `channel`, identities of other channels get abstain.
 */
export const nativeIds = (
  ids: Iterable<string> | Effect.Effect<Iterable<string>>,
  options: { readonly channel?: string } = {}
): Allowlist => ({
  _tag: "NativeIds",
  channel: options.channel,
  ids: Effect.isEffect(ids) ? cachedLoader(ids) : Effect.succeed(new Set(ids))
})

/**
 * Allows identities whose verified claim `claim` is one of `values` (a multi-valued claim matches when any of
 * its values is listed). Abstains before linking: claims are only known after it.
 */
export const linkedClaim = (claim: string, values: string | Iterable<string>): Allowlist => ({
  _tag: "LinkedClaim",
  claim,
  values: new Set(typeof values === "string" ? [values] : values)
})

/** Allow if any child allows; deny if every child denies; otherwise abstain. Empty abstains. */
export const anyOf = (...children: ReadonlyArray<Allowlist>): Allowlist => ({ _tag: "AnyOf", children })

/** Deny if any child denies; allow if every child allows; otherwise abstain. Empty abstains. */
export const allOf = (...children: ReadonlyArray<Allowlist>): Allowlist => ({ _tag: "AllOf", children })

/** An escape hatch: any effectful decision. Set `requiresLinkedClaims` when it reads verified claims. */
export const custom = (
  evaluate: (context: AuthorizationContext) => Effect.Effect<AllowlistDecision>,
  options: { readonly requiresLinkedClaims?: boolean } = {}
): Allowlist => ({ _tag: "Custom", evaluate, requiresLinkedClaims: options.requiresLinkedClaims ?? false })

const claimMatches = (value: ClaimValue | undefined, values: ReadonlySet<string>): boolean => {
  if (value === undefined) return false
  if (typeof value === "string") return values.has(value)
  return value.some((v) => values.has(v))
}

/** The decision of `allowlist` for `context`. Combinators stop at the first decisive child. */
export const evaluate = (allowlist: Allowlist, context: AuthorizationContext): Effect.Effect<AllowlistDecision> => {
  switch (allowlist._tag) {
    case "AllowAll":
      return Effect.succeed("allow")
    case "DenyAll":
      return Effect.succeed("deny")
    case "ChannelMembers":
      return Effect.succeed(context.identity.channel === allowlist.channel ? "allow" : "abstain")
    case "NativeIds":
      if (allowlist.channel !== undefined && allowlist.channel !== context.identity.channel) {
        return Effect.succeed("abstain")
      }
      return Effect.map(allowlist.ids, (ids) => ids.has(context.identity.nativeId) ? "allow" : "deny")
    case "LinkedClaim":
      if (context.phase === "pre_link") return Effect.succeed("abstain")
      return Effect.succeed(claimMatches(context.verifiedClaims[allowlist.claim], allowlist.values) ? "allow" : "deny")
    case "AnyOf":
      return combine(allowlist.children, context, "allow", "deny")
    case "AllOf":
      return combine(allowlist.children, context, "deny", "allow")
    case "Custom":
      return allowlist.evaluate(context)
  }
}

// `decisive` ends the walk; the result is `unanimous` only when every child said it, abstain otherwise.
const combine = (
  children: ReadonlyArray<Allowlist>,
  context: AuthorizationContext,
  decisive: AllowlistDecision,
  unanimous: AllowlistDecision
): Effect.Effect<AllowlistDecision> => {
  if (children.length === 0) return Effect.succeed("abstain")
  const loop = (i: number, abstained: boolean): Effect.Effect<AllowlistDecision> => {
    if (i === children.length) return Effect.succeed(abstained ? "abstain" : unanimous)
    return Effect.flatMap(evaluate(children[i]!, context), (decision) => {
      if (decision === decisive) return Effect.succeed(decisive)
      return loop(i + 1, abstained || decision === "abstain")
    })
  }
  return loop(0, false)
}

/** True when the allowlist can only decide with verified claims (it has a claim-based part). */
export const requiresLinkedClaims = (allowlist: Allowlist): boolean => {
  switch (allowlist._tag) {
    case "LinkedClaim":
      return true
    case "Custom":
      return allowlist.requiresLinkedClaims
    case "AnyOf":
    case "AllOf":
      return allowlist.children.some(requiresLinkedClaims)
    default:
      return false
  }
}

/** Every channel a channel-scoped part of the allowlist names, nested parts included. */
export const namedChannels = (allowlist: Allowlist): ReadonlySet<string> => {
  const names = new Set<string>()
  const walk = (list: Allowlist): void => {
    switch (list._tag) {
      case "ChannelMembers":
        names.add(list.channel)
        return
      case "NativeIds":
        if (list.channel !== undefined) names.add(list.channel)
        return
      case "AnyOf":
      case "AllOf":
        list.children.forEach(walk)
        return
      default:
        return
    }
  }
  walk(allowlist)
  return names
}

/**
 * The allowlist as it applies to `channel`: parts scoped to other channels are removed from the combinators
 * (and a combinator left with no children is removed too), so a list meant for Telegram neither blocks nor
 * lets through anyone on web chat. Undefined when nothing applies to `channel`: the list says nothing about it.
 */
export const forChannel = (allowlist: Allowlist, channel: string): Allowlist | undefined => {
  switch (allowlist._tag) {
    case "ChannelMembers":
    case "NativeIds":
      return allowlist.channel === undefined || allowlist.channel === channel ? allowlist : undefined
    case "AnyOf":
    case "AllOf": {
      if (allowlist.children.length === 0) return allowlist
      const children = allowlist.children.flatMap((child) => {
        const kept = forChannel(child, channel)
        return kept === undefined ? [] : [kept]
      })
      if (children.length === 0) return undefined
      return { _tag: allowlist._tag, children }
    }
    default:
      return allowlist
  }
}
