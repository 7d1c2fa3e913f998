/**
 * Inbound authentication: the `Authorization: Bearer <JWT>` Azure Bot Service sends with every activity, checked
 * as the official SDKs check it. RS256 only; the key must be one the issuer publishes; `aud` is the app id (or
 * `https://api.botframework.com`); `exp`/`nbf` with 5 minutes of skew. Bot Framework tokens (issuer
 * `https://api.botframework.com`) must carry a `serviceurl` claim naming the activity's service URL (hostnames
 * compared, as the SDK does), and their key must be endorsed for the activity's channel. A single-tenant bot also
 * accepts its tenant's Entra issuers. Whatever fails, the caller gets 401 (bad token) or 403 (a valid token used
 * for something it does not cover), and no turn runs.
 */
import type { HttpClient } from "@effect/platform"
import { DateTime, Duration, Effect, Schema } from "effect"
import * as Jose from "jose"
import type { KeySet } from "./Keys.js"
import * as Keys from "./Keys.js"
import type { Activity } from "./Schema.js"

export const BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
export const BOT_FRAMEWORK_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"

/** The request is not authenticated (401) or not allowed (403); `message` says why, without the token. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  status: Schema.Literal(401, 403),
  message: Schema.String
}) {}

export interface Options {
  readonly appId: string
  /** Single-tenant bots: the tenant whose Entra issuers are accepted too. */
  readonly tenantId?: string | undefined
  /** Default: the Bot Framework's public-cloud metadata. */
  readonly openIdMetadataUrl?: string
  /** Entra authority for the tenant's keys (default https://login.microsoftonline.com). */
  readonly authority?: string
  readonly clockSkew?: Duration.DurationInput
}

/** What a verified token says. */
export interface Verified {
  readonly issuer: string
  readonly serviceUrl: string | undefined
  readonly key: Keys.Jwk
  readonly botFramework: boolean
}

export interface Authenticator {
  /** Verifies the header's token for `activity`. */
  readonly authenticate: (header: string | undefined, activity: Activity) => Effect.Effect<Verified, Unauthorized>
  /** Fetches the Bot Framework keys (startup check). */
  readonly load: Effect.Effect<void, Keys.KeysUnavailable>
}

const unauthorized = (message: string) => new Unauthorized({ status: 401, message })
const forbidden = (message: string) => new Unauthorized({ status: 403, message })

const hostOf = (url: string): string | undefined => {
  try {
    return new URL(url).hostname.toLowerCase()
  } catch {
    return undefined
  }
}

const describeJoseError = (error: unknown): string => {
  if (error instanceof Jose.errors.JWTExpired) return "the token has expired"
  if (error instanceof Jose.errors.JWSSignatureVerificationFailed) return "the token's signature is not valid"
  if (error instanceof Jose.errors.JWTClaimValidationFailed) {
    return `the token's "${error.claim}" claim is not acceptable (${error.reason})`
  }
  return "the token is not valid"
}

export const make = (options: Options): Effect.Effect<Authenticator, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const skewSeconds = Duration.toSeconds(options.clockSkew ?? "5 minutes")
    const botFrameworkKeys = yield* Keys.make({ metadataUrl: options.openIdMetadataUrl ?? BOT_FRAMEWORK_METADATA })
    const authority = (options.authority ?? "https://login.microsoftonline.com").replace(/\/+$/, "")
    const tenant = options.tenantId
    const entraIssuers = tenant === undefined ?
      [] :
      [`https://sts.windows.net/${tenant}/`, `https://login.microsoftonline.com/${tenant}/v2.0`]
    const entraKeys: KeySet | undefined = tenant === undefined ?
      undefined :
      yield* Keys.make({ jwksUrl: `${authority}/${encodeURIComponent(tenant)}/discovery/v2.0/keys` })
    const audiences = [options.appId, BOT_FRAMEWORK_ISSUER]

    const authenticate = Effect.fn("Activity.Auth.authenticate")(
      function*(header: string | undefined, activity: Activity) {
        const match = header === undefined ? null : /^Bearer\s+(\S+)$/i.exec(header.trim())
        if (match === null) return yield* unauthorized("the Authorization header with a Bearer token is missing")
        const token = match[1]!
        const unverified = yield* Effect.try({
          try: () => ({ header: Jose.decodeProtectedHeader(token), payload: Jose.decodeJwt(token) }),
          catch: () => unauthorized("the Authorization header does not hold a JWT")
        })
        if (unverified.header.alg !== "RS256") return yield* unauthorized("the token must be signed with RS256")
        const kid = unverified.header.kid
        if (kid === undefined) return yield* unauthorized("the token names no signing key (kid)")
        const issuer = unverified.payload.iss
        const botFramework = issuer === BOT_FRAMEWORK_ISSUER
        const keySet = botFramework ? botFrameworkKeys : issuer !== undefined && entraIssuers.includes(issuer) ?
          entraKeys :
          undefined
        if (keySet === undefined || issuer === undefined) {
          return yield* unauthorized(`the token's issuer is not trusted`)
        }
        const jwk = yield* keySet.find(kid).pipe(
          Effect.tapError((error) => Effect.logWarning("signing keys unavailable", error.message)),
          Effect.mapError(() => unauthorized("the signing keys could not be fetched; try again"))
        )
        if (jwk === undefined) return yield* unauthorized("the token is signed with an unknown key")
        // jose takes the time as a Date; it comes from Clock so TestClock drives expiry in tests.
        const now = DateTime.toDateUtc(yield* DateTime.now)
        const verified = yield* Effect.tryPromise({
          try: async () => {
            const key = await Jose.importJWK({ ...jwk, alg: "RS256" } as Jose.JWK, "RS256")
            return await Jose.jwtVerify(token, key, {
              algorithms: ["RS256"],
              issuer,
              audience: audiences,
              clockTolerance: skewSeconds,
              currentDate: now,
              requiredClaims: ["exp"]
            })
          },
          catch: (error) => unauthorized(describeJoseError(error))
        })
        const claim = verified.payload.serviceurl ?? verified.payload.serviceUrl
        const serviceUrl = typeof claim === "string" ? claim : undefined
        if (botFramework) {
          if (serviceUrl === undefined) return yield* unauthorized("the token has no serviceurl claim")
          if (jwk.endorsements !== undefined && !jwk.endorsements.includes(activity.channelId)) {
            return yield* forbidden(`the signing key is not endorsed for channel "${activity.channelId}"`)
          }
        }
        if (serviceUrl !== undefined) {
          const claimed = hostOf(serviceUrl)
          if (claimed === undefined || claimed !== hostOf(activity.serviceUrl)) {
            return yield* forbidden("the activity's serviceUrl is not the one the token was issued for")
          }
        }
        return { issuer, serviceUrl, key: jwk, botFramework }
      }
    )

    return { authenticate, load: botFrameworkKeys.load }
  })

/**
 * Where replies may go: the service URLs the channel calls. An entry with a scheme (`http://127.0.0.1:3978`) allows
 * that origin; a bare host pattern (`smba.trafficmanager.net`, `*.botframework.com`) allows it over https.
 */
export const defaultServiceUrls: ReadonlyArray<string> = [
  "smba.trafficmanager.net",
  "*.botframework.com",
  "*.trafficmanager.net"
]

export const serviceUrlAllowed = (allowlist: ReadonlyArray<string>) => {
  const origins = new Set<string>()
  const hosts: Array<(host: string) => boolean> = []
  for (const entry of allowlist) {
    const trimmed = entry.trim().toLowerCase()
    if (trimmed.length === 0) continue
    if (trimmed.includes("://")) {
      try {
        origins.add(new URL(trimmed).origin)
      } catch {
        // A malformed entry allows nothing.
      }
    } else if (trimmed.startsWith("*.")) {
      const suffix = trimmed.slice(1)
      hosts.push((host) => host.endsWith(suffix) && host.length > suffix.length)
    } else {
      hosts.push((host) => host === trimmed)
    }
  }
  return (serviceUrl: string): boolean => {
    let url: URL
    try {
      url = new URL(serviceUrl)
    } catch {
      return false
    }
    if (url.username !== "" || url.password !== "") return false
    if (origins.has(url.origin)) return true
    return url.protocol === "https:" && hosts.some((matches) => matches(url.hostname.toLowerCase()))
  }
}
