/**
 * Authorization: the real `Authorizer`. Every turn of every channel passes here before the session actor runs
 * it; the decision (allowed, sign-in required, denied) comes from the channel's allowlist, the identity linker
 * and the identity registry. See docs/AUTHORIZATION.md for the profiles and the isolation-key rule.
 */
import type { ConfigError } from "effect"
import { Context, Effect, Layer, LogLevel, Metric, MetricLabel, Option } from "effect"
import type { ChannelKind } from "../core/Channel.js"
import { Channels } from "../core/Channels.js"
import type { ChannelRequest } from "../domain/ChannelRequest.js"
import { AccessDenied, HostConfigurationError, LinkRequiredError } from "../domain/Errors.js"
import type { ChannelIdentity } from "../domain/Identity.js"
import { identityToken } from "../domain/Identity.js"
import type { IsolationKey } from "../domain/Ids.js"
import { isolationKeyProblem } from "../domain/Ids.js"
import { StateStore } from "../state/StateStore.js"
import type { Allowlist, AuthorizationContext, AuthorizationPhase, ClaimSource, VerifiedClaims } from "./Allowlist.js"
import * as Allowlists from "./Allowlist.js"
import type { AuthorizationConfig } from "./AuthorizationConfig.js"
import { config } from "./AuthorizationConfig.js"
import type { AuthorizerShape } from "./Authorizer.js"
import { Authorizer } from "./Authorizer.js"
import type { LinkChallenge } from "./IdentityLinker.js"
import * as IdentityLinker from "./IdentityLinker.js"
import * as OidcLinker from "./OidcLinker.js"

export type { AllowlistDecision, AuthorizationContext } from "./Allowlist.js"
export type { AuthorizationConfig, ChannelAllowlist, ChannelPolicy } from "./AuthorizationConfig.js"
export { config, open, parseAllow, withRequireLink } from "./AuthorizationConfig.js"

// ---------------------------------------------------------------------------------------------------------------
// Configuration

/** The request attribute a channel with `emitsVerifiedClaims` puts the caller's verified claims in. */
export const VERIFIED_CLAIMS_ATTRIBUTE = "verifiedClaims"

// ---------------------------------------------------------------------------------------------------------------
// Outcomes

export interface Allowed {
  readonly _tag: "Allowed"
  /** The key the turn runs under; undefined for a sessionless request that keeps none. */
  readonly isolationKey: string | undefined
  readonly verifiedClaims: VerifiedClaims
  readonly claimSource: ClaimSource
  readonly reasonCode: string
  readonly phase: AuthorizationPhase
}

export interface LinkRequired {
  readonly _tag: "LinkRequired"
  readonly challenge: LinkChallenge
  readonly phase: AuthorizationPhase
}

export interface Denied {
  readonly _tag: "Denied"
  readonly reasonCode: string
  /** Short, safe to show the caller. */
  readonly userMessage: string
  /** For the logs only; never reaches the wire. */
  readonly logDetails: Readonly<Record<string, unknown>>
  readonly phase: AuthorizationPhase
}

export type AuthorizationOutcome = Allowed | LinkRequired | Denied

const messages = {
  noAccess: "You don't have access to this bot.",
  linkRequired: "Please link your account to continue.",
  noLinker: "Sign-in is not configured for this bot.",
  noIdentity: "This request does not say who is asking, so it cannot be let in.",
  unavailable: "Access could not be checked right now; please try again shortly."
} as const

const denied = (
  reasonCode: string,
  userMessage: string,
  phase: AuthorizationPhase,
  logDetails: Readonly<Record<string, unknown>> = {}
): Denied => ({ _tag: "Denied", reasonCode, userMessage, logDetails, phase })

/** Denied requests, by channel and reason code. */
export const deniedTotal = Metric.counter("agent_host_authorization_denied_total", {
  description: "requests refused by authorization",
  incremental: true
})

export const deniedCounterFor = (channel: string, reasonCode: string) =>
  Metric.taggedWithLabels(deniedTotal, [MetricLabel.make("channel", channel), MetricLabel.make("reason", reasonCode)])

// ---------------------------------------------------------------------------------------------------------------
// Per-channel policy

/** What applies to one channel once defaults and overrides are resolved. */
export interface EffectivePolicy {
  readonly channel: string
  readonly kind: ChannelKind
  /** Undefined: nobody is checked. */
  readonly allowlist: Allowlist | undefined
  readonly requireLink: boolean
  readonly emitsVerifiedClaims: boolean
  /** Whether the channel's own policy (not the host default) decided the allowlist. */
  readonly explicit: boolean
}

/**
 * The policy of `channel`. Programmatic channels are guarded by API keys: the host default only applies to them
 * when it names them (a channel-scoped part for that channel); their own override always applies.
 */
export const policyFor = (config: AuthorizationConfig, channel: string, kind: ChannelKind): EffectivePolicy => {
  const own = config.channels?.[channel]
  const source = own?.allowlist ?? "inherit"
  let allowlist: Allowlist | undefined
  if (source === "open") {
    allowlist = undefined
  } else if (source === "inherit") {
    const fallback = config.allowlist === undefined || config.allowlist === "open" ? undefined : config.allowlist
    if (fallback === undefined) allowlist = undefined
    else if (kind === "programmatic" && !Allowlists.namedChannels(fallback).has(channel)) allowlist = undefined
    else allowlist = Allowlists.forChannel(fallback, channel)
  } else {
    allowlist = Allowlists.forChannel(source, channel)
  }
  if (allowlist?._tag === "AllowAll") allowlist = undefined
  return {
    channel,
    kind,
    allowlist,
    requireLink: own?.requireLink ?? (kind === "chat" && config.requireLink === true),
    emitsVerifiedClaims: own?.emitsVerifiedClaims ?? false,
    explicit: source !== "inherit"
  }
}

const isOpen = (policy: EffectivePolicy) => policy.allowlist === undefined && !policy.requireLink

export interface ChannelInfo {
  readonly name: string
  readonly kind: ChannelKind
}

/**
 * Configurations that would deny silently, each naming the channel: a channel-scoped list (nested ones too) in
 * the host allowlist or in an enabled channel's allowlist naming a channel that does not exist; `requireLink`
 * without a linker; a claim-based allowlist on a channel with no claim source (no linker, and the channel emits
 * no verified claims). An override for a channel that is not enabled is not a problem: see `unusedChannels`.
 */
export const problems = (
  config: AuthorizationConfig,
  channels: ReadonlyArray<ChannelInfo>,
  linkerAvailable: boolean
): ReadonlyArray<HostConfigurationError> => {
  const known = new Set(channels.map((c) => c.name))
  const found: Array<HostConfigurationError> = []
  const unknownIn = (list: Allowlist, where: string) => {
    for (const name of Allowlists.namedChannels(list)) {
      if (!known.has(name)) {
        found.push(
          new HostConfigurationError({
            channel: name,
            message: `${where} names channel "${name}", which is not enabled (enabled: ${
              [...known].join(", ") || "none"
            }); fix the name or enable the channel`
          })
        )
      }
    }
  }
  if (config.allowlist !== undefined && config.allowlist !== "open") unknownIn(config.allowlist, "the host allowlist")
  for (const [name, own] of Object.entries(config.channels ?? {})) {
    // A policy for a channel that is not running decides nothing: `unusedChannels` reports it as a warning.
    if (!known.has(name)) continue
    if (own.allowlist !== undefined && typeof own.allowlist !== "string") {
      unknownIn(own.allowlist, `the allowlist of channel "${name}"`)
    }
  }
  for (const channel of channels) {
    const policy = policyFor(config, channel.name, channel.kind)
    if (policy.requireLink && !linkerAvailable) {
      found.push(
        new HostConfigurationError({
          channel: channel.name,
          message:
            `channel "${channel.name}" requires sign-in (requireLink) but no identity linker is configured: every caller would be refused; provide an IdentityLinker layer or drop requireLink`
        })
      )
    }
    if (
      policy.allowlist !== undefined && Allowlists.requiresLinkedClaims(policy.allowlist) && !linkerAvailable &&
      !policy.emitsVerifiedClaims
    ) {
      found.push(
        new HostConfigurationError({
          channel: channel.name,
          message:
            `channel "${channel.name}" uses a claim-based allowlist but has no source of verified claims: every caller would be refused; provide an IdentityLinker, mark the channel emitsVerifiedClaims, or give it another allowlist`
        })
      )
    }
  }
  return found
}

/**
 * The channels that have a policy in `config.channels` but are not enabled (e.g. `telegram:12345` in
 * `AGENT_HOST_ALLOW` without a Telegram token). Such an entry lets nobody in anywhere, so it is a warning at
 * startup, not a failure: a typo leaves the intended channel closed (and warned about), never open.
 */
export const unusedChannels = (
  config: AuthorizationConfig,
  channels: ReadonlyArray<ChannelInfo>
): ReadonlyArray<string> => {
  const known = new Set(channels.map((c) => c.name))
  return Object.keys(config.channels ?? {}).filter((name) => !known.has(name))
}

// ---------------------------------------------------------------------------------------------------------------
// The service

const readClaims = (value: unknown): VerifiedClaims => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return {}
  const claims: Record<string, string | ReadonlyArray<string>> = {}
  for (const [name, v] of Object.entries(value)) {
    if (typeof v === "string") claims[name] = v
    else if (Array.isArray(v) && v.every((x) => typeof x === "string")) claims[name] = v as ReadonlyArray<string>
  }
  return claims
}

// The default key of an identity (the key a channel would derive from it with no opinion of its own) is its token,
// `<channel>:<native_id>`.
const identityKey = identityToken

// A key from a native id or a linker must still be a valid isolation key; if not, nobody can be let in under it.
const checkKey = (outcome: AuthorizationOutcome): AuthorizationOutcome => {
  if (outcome._tag !== "Allowed" || outcome.isolationKey === undefined) return outcome
  const problem = isolationKeyProblem(outcome.isolationKey)
  if (problem === undefined) return outcome
  return denied("invalid_identity", messages.noAccess, outcome.phase, {
    key: outcome.isolationKey.slice(0, 100),
    problem: `isolation key ${problem}`
  })
}

export interface AuthorizationShape extends AuthorizerShape {
  /** The decision for `request`, without failing or logging. */
  readonly decide: (request: ChannelRequest) => Effect.Effect<AuthorizationOutcome>
}

export const make = (config: AuthorizationConfig) =>
  Effect.gen(function*() {
    const store = yield* StateStore
    const channels = yield* Channels
    const linker = yield* IdentityLinker.IdentityLinker
    const policies = new Map<string, EffectivePolicy>()

    const policyOf = (channel: string): EffectivePolicy => {
      let policy = policies.get(channel)
      if (policy === undefined) {
        policy = policyFor(config, channel, channels.unsafeGet(channel)?.contribution.kind ?? "chat")
        policies.set(channel, policy)
      }
      return policy
    }

    /**
     * The isolation-key rule for chat channels. A key the channel chose for the conversation (a group chat, a
     * thread, a session id) is kept. A key that is only the identity's default (`<channel>:<native_id>`), or
     * none, gives way to where the identity is registered (it was linked, or first seen, under another key).
     */
    const keyFor = Effect.fnUntraced(function*(request: ChannelRequest, identity: ChannelIdentity) {
      const requested = request.session?.isolationKey
      const fallback = identityKey(identity)
      if (requested !== undefined && requested !== fallback) return requested
      // A person's linked identities share one conversation (link_sessions), whether or not sign-in is required.
      const shared = linker.sharedKey === undefined ? Option.none() : yield* linker.sharedKey(identity)
      if (Option.isSome(shared)) return shared.value
      const registered = yield* store.findKeyByIdentity(identity.channel, identity.nativeId)
      return Option.getOrElse(registered, () => fallback)
    })

    const chooseLinked = (request: ChannelRequest, identity: ChannelIdentity, linkedKey: string) => {
      const requested = request.session?.isolationKey
      return requested !== undefined && requested !== identityKey(identity) ? requested : linkedKey
    }

    const decide = Effect.fnUntraced(function*(request: ChannelRequest) {
      const policy = policyOf(request.channel)
      const identity = request.identity
      const programmatic = policy.kind === "programmatic"
      const asIs = (reasonCode: string): Allowed => ({
        _tag: "Allowed",
        isolationKey: request.session?.isolationKey,
        verifiedClaims: {},
        claimSource: "none",
        reasonCode,
        phase: "pre_link"
      })
      if (programmatic && (identity === undefined || isOpen(policy))) return asIs("api_key")
      if (identity === undefined) {
        if (isOpen(policy)) return asIs("open")
        return denied("identity_missing", messages.noIdentity, "pre_link", { channel: request.channel })
      }

      const channelClaims = policy.emitsVerifiedClaims
        ? readClaims(request.attributes?.[VERIFIED_CLAIMS_ATTRIBUTE])
        : {}
      const hasChannelClaims = Object.keys(channelClaims).length > 0
      const claimSource: ClaimSource = hasChannelClaims ? "channel" : "none"
      const key = programmatic ? request.session?.isolationKey : yield* keyFor(request, identity)
      const allowed = (
        isolationKey: string | undefined,
        verifiedClaims: VerifiedClaims,
        source: ClaimSource,
        reasonCode: string,
        phase: AuthorizationPhase
      ): Allowed => ({ _tag: "Allowed", isolationKey, verifiedClaims, claimSource: source, reasonCode, phase })

      // Linking: without a linker nobody can be let in; a challenge ends the decision; a linked identity gives
      // the post-link context (the linker's claims, and the linked key unless the channel chose its own).
      const resolveLink = Effect.fnUntraced(function*(reasonWithoutLinker: string) {
        if (!linker.available) return denied(reasonWithoutLinker, messages.noLinker, "pre_link")
        const resolution = yield* linker.resolve(identity)
        if (resolution._tag === "LinkChallenge") {
          return { _tag: "LinkRequired", challenge: resolution, phase: "pre_link" } satisfies LinkRequired
        }
        const context: AuthorizationContext = {
          identity,
          phase: "post_link",
          isolationKey: programmatic ? key : chooseLinked(request, identity, resolution.isolationKey),
          verifiedClaims: resolution.verifiedClaims,
          claimSource: resolution.claimSource
        }
        return { _tag: "Linked", context } as const
      })

      const link = Effect.fnUntraced(function*(reasonCode: string) {
        const linked = yield* resolveLink("link_required_without_linker")
        if (linked._tag !== "Linked") return linked
        const { claimSource, isolationKey, verifiedClaims } = linked.context
        return allowed(isolationKey, verifiedClaims, claimSource, reasonCode, "post_link")
      })

      const list = policy.allowlist
      if (list === undefined) {
        return policy.requireLink ? yield* link("linked") : allowed(key, channelClaims, claimSource, "open", "pre_link")
      }
      const context: AuthorizationContext = {
        identity,
        phase: "pre_link",
        isolationKey: key,
        verifiedClaims: channelClaims,
        claimSource
      }
      const pre = yield* Allowlists.evaluate(list, context)
      if (pre === "deny") {
        return denied("allowlist_denied_pre_link", messages.noAccess, "pre_link")
      }
      if (pre === "allow" || !Allowlists.requiresLinkedClaims(list)) {
        const reason = pre === "allow" ? "allowlist_allowed_pre_link" : "allowlist_abstained_pre_link"
        return policy.requireLink ? yield* link(reason) : allowed(key, channelClaims, claimSource, reason, "pre_link")
      }

      // Abstained, and the list needs verified claims: from the channel, or from linking (always from linking
      // when the channel requires sign-in).
      let post: AuthorizationContext
      if (hasChannelClaims && !policy.requireLink) {
        post = { ...context, phase: "post_link" }
      } else {
        const linked = yield* resolveLink("allowlist_requires_link")
        if (linked._tag !== "Linked") return linked
        post = linked.context
      }
      const decision = yield* Allowlists.evaluate(list, post)
      if (decision === "allow") {
        return allowed(
          post.isolationKey,
          post.verifiedClaims,
          post.claimSource,
          "allowlist_allowed_post_link",
          "post_link"
        )
      }
      return denied(
        decision === "deny" ? "allowlist_denied_post_link" : "allowlist_abstained_post_link",
        messages.noAccess,
        "post_link",
        { claimSource: post.claimSource, claims: Object.keys(post.verifiedClaims).join(",") }
      )
    }, (effect) =>
      Effect.catchAllDefect(effect, (defect) =>
        Effect.as(
          Effect.logError("authorization failed", defect),
          denied("authorization_unavailable", messages.unavailable, "pre_link")
        )), Effect.map(checkKey))

    // Nothing to check (an API-key channel, or an open channel and no identity): the request runs as it is, with
    // no decision record and no log line; this is most turns of a programmatic channel, so it stays allocation-free.
    const authorize = (request: ChannelRequest): Effect.Effect<ChannelRequest, AccessDenied | LinkRequiredError> => {
      const policy = policyOf(request.channel)
      const open = isOpen(policy)
      const noIdentity = request.identity === undefined
      // The same as `decide`'s first two answers (allowed as is, the request's own key, already validated).
      if ((policy.kind === "programmatic" && (noIdentity || open)) || (noIdentity && open)) {
        return Effect.succeed(request)
      }
      return authorizeChecked(request)
    }

    const authorizeChecked = Effect.fnUntraced(function*(request: ChannelRequest) {
      const outcome = yield* decide(request)
      const annotations = { channel: request.channel, phase: outcome.phase }
      switch (outcome._tag) {
        case "Allowed": {
          yield* Effect.whenLogLevel(
            Effect.logDebug("authorization allowed").pipe(
              Effect.annotateLogs({ ...annotations, reason: outcome.reasonCode, claimSource: outcome.claimSource })
            ),
            LogLevel.Debug
          )
          const key = outcome.isolationKey
          // The claims reach the turn's request context (RequestContext.verified), never its text.
          const verified = outcome.claimSource === "none" || Object.keys(outcome.verifiedClaims).length === 0 ?
            request :
            { ...request, verified: { claims: outcome.verifiedClaims, source: outcome.claimSource } }
          if (key === undefined || key === request.session?.isolationKey) return verified
          return { ...verified, session: { ...request.session, isolationKey: key as IsolationKey } }
        }
        case "LinkRequired": {
          const challenge = outcome.challenge
          yield* Effect.logInfo("authorization needs sign-in").pipe(
            Effect.annotateLogs({ ...annotations, reason: "link_required", challenge: challenge.challengeId })
          )
          return yield* new LinkRequiredError({
            challengeId: challenge.challengeId,
            message: challenge.message ??
              (challenge.url === undefined ? messages.linkRequired : `${messages.linkRequired} ${challenge.url}`),
            ...(challenge.url === undefined ? {} : { url: challenge.url }),
            ...(challenge.expiresAt === undefined ? {} : { expiresAt: challenge.expiresAt })
          })
        }
        case "Denied": {
          yield* Effect.logInfo("authorization denied").pipe(
            Effect.annotateLogs({ ...outcome.logDetails, ...annotations, reason: outcome.reasonCode })
          )
          yield* Metric.increment(deniedCounterFor(request.channel, outcome.reasonCode))
          return yield* new AccessDenied({ reasonCode: outcome.reasonCode, message: outcome.userMessage })
        }
      }
    })

    const validate = Effect.fn("Authorization.validate")(function*(names: ReadonlyArray<string>) {
      const infos = names.map((name): ChannelInfo => ({
        name,
        kind: channels.unsafeGet(name)?.contribution.kind ?? "chat"
      }))
      const found = problems(config, infos, linker.available)
      if (found.length > 0) {
        for (const problem of found.slice(1)) yield* Effect.logError(problem.message)
        return yield* found[0]!
      }
      for (const name of unusedChannels(config, infos)) {
        yield* Effect.logWarning(
          `authorization is configured for channel "${name}", which is not enabled (enabled: ${
            names.join(", ") || "none"
          }); its entries have no effect: fix the name or enable the channel`
        ).pipe(Effect.annotateLogs({ channel: name }))
      }
      policies.clear()
      for (const info of infos) {
        const policy = policyFor(config, info.name, info.kind)
        policies.set(info.name, policy)
        if (info.kind !== "chat") continue
        if (isOpen(policy)) {
          const log = policy.explicit ?
            Effect.logInfo(`channel "${info.name}" is open to everyone by configuration`) :
            Effect.logWarning(
              `channel "${info.name}" is OPEN: anyone who can reach it can use the agent; set AGENT_HOST_ALLOW (e.g. ${info.name}:<id>) or configure an allowlist`
            )
          yield* log.pipe(Effect.annotateLogs({ channel: info.name }))
        } else if (policy.allowlist?._tag === "DenyAll" && !policy.requireLink) {
          yield* Effect.logWarning(
            `channel "${info.name}" is CLOSED: its allowlist denies everyone; add ${info.name}:<id> or ${info.name}:* to AGENT_HOST_ALLOW to let people in`
          ).pipe(Effect.annotateLogs({ channel: info.name }))
        }
      }
    })

    return { authorize, validate, decide } satisfies AuthorizationShape
  })

/**
 * The real authorizer for `config`. The linker it decides with is passed through, so the host can mount the
 * linker's routes and offer channels its link commands.
 */
export const layer = (
  config: AuthorizationConfig
): Layer.Layer<
  Authorizer | IdentityLinker.IdentityLinker,
  never,
  Channels | StateStore | IdentityLinker.IdentityLinker
> =>
  Layer.merge(
    Layer.effect(Authorizer, make(config)),
    Layer.effect(IdentityLinker.IdentityLinker, IdentityLinker.IdentityLinker)
  )

// ---------------------------------------------------------------------------------------------------------------
// Environment (parsed in ./AuthorizationConfig.ts)

/**
 * The authorizer configured from the environment (`AGENT_HOST_ALLOW`, `AGENT_HOST_REQUIRE_LINK`), with the
 * identity linker it configures (OIDC when `AGENT_HOST_OIDC_ISSUER` is set, none otherwise).
 */
export const layerConfig: Layer.Layer<
  Authorizer | IdentityLinker.IdentityLinker,
  ConfigError.ConfigError,
  Channels | StateStore
> = Layer.scopedContext(
  // The linker, then the authorizer on it, in one layer build (as `unwrapEffect(map(config, layer))` over
  // `provide(OidcLinker.layerConfig)` builds them, with ~12 fewer layer builds per start: PERFORMANCE.md).
  Effect.gen(function*() {
    const linker = yield* Layer.buildWithMemoMap(
      OidcLinker.layerConfig,
      yield* Layer.CurrentMemoMap,
      yield* Effect.scope
    )
    const authorizer = yield* Effect.provide(Effect.flatMap(config, make), linker)
    return Context.add(linker, Authorizer, authorizer)
  })
)
