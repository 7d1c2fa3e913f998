/**
 * The authorization configuration: its types, and `AGENT_HOST_ALLOW` / `AGENT_HOST_REQUIRE_LINK` parsed from the
 * environment. Kept apart from the authorizer (Authorization.ts), which re-exports all of it.
 */
import { Config, ConfigError, Either, Option } from "effect"
import * as Allowlists from "./Allowlist.js"
import type { Allowlist } from "./Allowlist.js"

/** A channel's own allowlist: the host default (`inherit`), nobody checked (`open`), or a list. */
export type ChannelAllowlist = "inherit" | "open" | Allowlist

export interface ChannelPolicy {
  /** Default `inherit`. */
  readonly allowlist?: ChannelAllowlist
  /** Every caller must link an account (sign in) before a turn runs. Needs an `IdentityLinker`. */
  readonly requireLink?: boolean
  /**
   * The channel puts verified claims in `request.attributes.verifiedClaims` (it authenticated the caller
   * itself, e.g. a signed token); claim-based allowlists may then decide without a linker.
   */
  readonly emitsVerifiedClaims?: boolean
}

export interface AuthorizationConfig {
  /** The host default, for channels that inherit. Default open. */
  readonly allowlist?: Allowlist | "open"
  /** Host default for chat channels (programmatic channels only link when their own policy says so). */
  readonly requireLink?: boolean
  /** Per-channel overrides, by channel name. */
  readonly channels?: Readonly<Record<string, ChannelPolicy>>
}

/** Everyone in, everywhere: the default when nothing is configured. */
export const open: AuthorizationConfig = {}

const channelName = /^[a-z][a-z0-9_-]{0,63}$/

/**
 * `AGENT_HOST_ALLOW` as a configuration: comma-separated `channel:native_id`, `channel:*` or
 * `claim:<name>=<value>`. Chat channels with no entry are closed unless a claim entry lets the caller in (its
 * verified claim `name` has `value`, e.g. `claim:groups=agents-users`; that needs an identity linker); a
 * programmatic channel is checked only when an entry names it.
 */
export const parseAllow = (value: string): Either.Either<AuthorizationConfig, string> => {
  const perChannel = new Map<string, Set<string> | "*">()
  const perClaim = new Map<string, Set<string>>()
  for (const raw of value.split(",")) {
    const entry = raw.trim()
    if (entry.length === 0) continue
    const colon = entry.indexOf(":")
    if (colon <= 0 || colon === entry.length - 1) {
      return Either.left(`entry "${entry}" is not channel:native_id, channel:* or claim:<name>=<value>`)
    }
    const channel = entry.slice(0, colon)
    const id = entry.slice(colon + 1)
    if (channel === "claim") {
      const eq = id.indexOf("=")
      if (eq <= 0 || eq === id.length - 1) {
        return Either.left(`entry "${entry}" is not claim:<name>=<value> (e.g. claim:groups=agents-users)`)
      }
      const claim = id.slice(0, eq)
      const values = perClaim.get(claim) ?? new Set<string>()
      values.add(id.slice(eq + 1))
      perClaim.set(claim, values)
      continue
    }
    if (!channelName.test(channel)) {
      return Either.left(`"${channel}" in entry "${entry}" is not a channel name (a-z, 0-9, '_', '-')`)
    }
    const existing = perChannel.get(channel)
    if (id === "*" || existing === "*") perChannel.set(channel, "*")
    else if (existing === undefined) perChannel.set(channel, new Set([id]))
    else existing.add(id)
  }
  const claimLists = [...perClaim].map(([claim, values]) => Allowlists.linkedClaim(claim, values))
  const byClaim = claimLists.length === 0 ?
    undefined :
    claimLists.length === 1 ?
    claimLists[0]! :
    Allowlists.anyOf(...claimLists)
  const channels: Record<string, ChannelPolicy> = {}
  for (const [channel, ids] of perChannel) {
    const listed = ids === "*" ? undefined : Allowlists.nativeIds(ids, { channel })
    channels[channel] = {
      allowlist: listed === undefined ? "open" : byClaim === undefined ? listed : Allowlists.anyOf(listed, byClaim)
    }
  }
  return Either.right({ allowlist: byClaim ?? Allowlists.denyAll, channels })
}

/**
 * `AGENT_HOST_REQUIRE_LINK`: `true` (every chat channel), `false`, or a comma-separated list of channel names
 * whose callers must link (sign in) first.
 */
export const withRequireLink = (
  config: AuthorizationConfig,
  value: string
): Either.Either<AuthorizationConfig, string> => {
  const trimmed = value.trim().toLowerCase()
  if (trimmed === "" || trimmed === "false") return Either.right(config)
  if (trimmed === "true") return Either.right({ ...config, requireLink: true })
  const channels: Record<string, ChannelPolicy> = { ...config.channels }
  for (const raw of trimmed.split(",")) {
    const name = raw.trim()
    if (name.length === 0) continue
    if (!channelName.test(name)) return Either.left(`"${name}" is not a channel name (or use true / false)`)
    channels[name] = { ...channels[name], requireLink: true }
  }
  return Either.right({ ...config, channels })
}

/** The configuration from the environment: open when `AGENT_HOST_ALLOW` is unset. */
export const config: Config.Config<AuthorizationConfig> = Config.all([
  Config.option(Config.string("AGENT_HOST_ALLOW")),
  Config.string("AGENT_HOST_REQUIRE_LINK").pipe(Config.withDefault(""))
]).pipe(
  Config.mapOrFail(([allow, requireLink]) => {
    const base = Option.isNone(allow) ?
      Either.right(open) :
      Either.mapLeft(parseAllow(allow.value), (message) => ConfigError.InvalidData(["AGENT_HOST_ALLOW"], message))
    return Either.flatMap(base, (config) =>
      Either.mapLeft(
        withRequireLink(config, requireLink),
        (message) => ConfigError.InvalidData(["AGENT_HOST_REQUIRE_LINK"], message)
      ))
  })
)
