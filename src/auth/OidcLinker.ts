/**
 * Identity linking with OpenID Connect: a channel identity (`telegram:42`) signs in once with any OIDC provider
 * (Entra ID, Google, Keycloak, Auth0: configurations, not code) and is linked to the person's subject, with the
 * claims the provider signed (email, groups, ...).
 *
 * The flow: `offer(identity)` → `GET <path>/start?state=…` (checks the signed state, shows a page naming the
 * identity being linked) → its button, `POST <path>/start` (state in the form; sets a browser-binding cookie,
 * redirects to the provider with PKCE and a nonce) → the provider → `GET <path>/callback` (state checked
 * and used up, code exchanged, ID token checked: issuer, audience, nonce, expiry, signature against the JWKS) →
 * the link is stored in the state store's links table. Every failure is a 4xx page (or JSON, for a client that
 * asks for it) saying what to do, never a 5xx.
 */
import type { HttpServerResponse } from "@effect/platform"
import { HttpServerResponse as Response } from "@effect/platform"
import { Config, ConfigError, Data, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { createHash } from "node:crypto"
import * as oauth from "oauth4webapi"
import type { ChannelLinking, LinkOffer, LinkView, Route, RouteInput } from "../core/Channel.js"
import type { ChannelIdentity } from "../domain/Identity.js"
import { identityToken } from "../domain/Identity.js"
import * as Redact from "../domain/Redact.js"
import * as Time from "../domain/Time.js"
import { describeBodyError, readText } from "../http/HttpBody.js"
import { joinPath } from "../http/Router.js"
import type { IdentityLink } from "../state/StateStore.js"
import { StateStore } from "../state/StateStore.js"
import type { VerifiedClaims } from "./Allowlist.js"
import * as IdentityLinker from "./IdentityLinker.js"
import type { LinkStateError, LinkStatePayload } from "./LinkState.js"
import * as LinkState from "./LinkState.js"

export interface OidcSettings {
  /** The issuer URL; its `/.well-known/openid-configuration` is read on first use. */
  readonly issuer: string
  readonly clientId: string
  /** Absent: a public client (PKCE only). */
  readonly clientSecret?: Redacted.Redacted<string> | undefined
  /** How the secret is sent to the token endpoint (default `basic`). */
  readonly clientAuth?: "basic" | "post"
  /** The host's public base URL (`https://bot.example.com`); the callback is `<base><path>/callback`. */
  readonly redirectBaseUrl: string
  /** Route prefix of the link routes (default `/link`). */
  readonly path?: string
  /** Default `openid email profile`. */
  readonly scopes?: string
  /** Refuse a link unless the ID token has an email with `email_verified: true`. */
  readonly requireVerifiedEmail?: boolean
  /** ID token claims kept with the link (besides `sub` and `iss`). */
  readonly claims?: ReadonlyArray<string>
  /** One person's linked identities share one isolation key (and so one conversation). Default false. */
  readonly linkSessions?: boolean
  /** The state signing key; default: generated once and kept in the state store. */
  readonly stateKey?: Redacted.Redacted<string> | undefined
  /** How long a sign-in link is valid (default 10 minutes; at most `LinkState.seenWindow`, one hour). */
  readonly stateTtl?: Duration.DurationInput
  /** Plain-HTTP provider URLs: allowed for loopback issuers always, elsewhere only with this. */
  readonly allowHttp?: boolean
  /** The most chat identities one person may link with shared sessions (default 20): bounds `all_linked`. */
  readonly maxLinksPerPerson?: number
  /** How long one call to the provider may take (default 10 seconds). */
  readonly providerTimeout?: Duration.DurationInput
  /**
   * How old a sign-in may be (its `auth_time`): older, the person is asked to sign in again before the claims
   * count; the provider is asked to re-authenticate anyone who signed in longer ago (`max_age`). Default: none.
   */
  readonly maxAge?: Duration.DurationInput
}

export const defaultClaims: ReadonlyArray<string> = [
  "email",
  "email_verified",
  "name",
  "preferred_username",
  "groups",
  "roles"
]

/** When the person last signed in: the provider's `auth_time` when it sent one, else when the link was made. */
export const signedInAt = (link: IdentityLink): Time.EpochMillis => {
  const authTime = Number(link.claims.auth_time)
  return Number.isFinite(authTime) && authTime > 0 ? Time.fromMillis(authTime * 1000) : link.linkedAt
}

const stateCookie = "agent_host_link"

const loopback = (url: URL) => ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)

/** A claim value as the allowlists see it: strings, lists of strings; booleans and numbers as text. */
const claimValue = (value: unknown): string | ReadonlyArray<string> | undefined => {
  if (typeof value === "string") return value
  if (typeof value === "boolean" || typeof value === "number") return String(value)
  if (Array.isArray(value)) {
    const strings = value.filter((v): v is string => typeof v === "string")
    return strings.length === value.length ? strings : undefined
  }
  return undefined
}

const readClaims = (value: unknown): VerifiedClaims => {
  if (value === null || typeof value !== "object") return {}
  const out: Record<string, string | ReadonlyArray<string>> = {}
  for (const [name, v] of Object.entries(value)) {
    const c = claimValue(v)
    if (c !== undefined) out[name] = c
  }
  return out
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

/** A small page for the browser, or the host's JSON envelope for a client that asks for JSON. */
const page = (
  input: RouteInput,
  status: number,
  type: string,
  title: string,
  message: string,
  headers: Record<string, string> = {}
): HttpServerResponse.HttpServerResponse => {
  const accept = String(input.request.headers.accept ?? "")
  if (accept.includes("application/json") && !accept.includes("text/html")) {
    const body = status < 400 ? { status: type, message } : { error: { message, type } }
    return Response.text(JSON.stringify(body), { status, contentType: "application/json", headers })
  }
  const html = `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
    `<title>${escapeHtml(title)}</title></head><body data-status="${escapeHtml(type)}">` +
    `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`
  return Response.text(html, {
    status,
    contentType: "text/html; charset=utf-8",
    headers: { "cache-control": "no-store", "referrer-policy": "no-referrer", ...headers }
  })
}

/**
 * How the confirmation page names an identity: the channel's `display_name` instead of the native id (a channel
 * whose id is a secret, such as a web chat browser's, names it this way), else `@username (id)`, else the id.
 */
const labelOf = (identity: ChannelIdentity): string | undefined => {
  const text = (value: unknown) => typeof value === "string" && value.length > 0 ? value.slice(0, 64) : undefined
  const display = text(identity.attributes?.display_name)
  if (display !== undefined) return display
  const username = text(identity.attributes?.username)
  return username === undefined ? undefined : `@${username} (${identity.nativeId})`
}

/**
 * How logs name an identity: its channel and a tag of its native id, never the id (some channels' ids are bearers,
 * such as a web chat browser's; the linker cannot tell which).
 */
const logName = (identity: { readonly channel: string; readonly nativeId: string }) =>
  `${identity.channel}:#${Redact.tag(identity.nativeId)}`

/** The most a confirmation form post may carry: the state (at most ~2.8 KB) and little else. */
const maxConfirmBytes = 8 * 1024

const refused = (input: RouteInput, error: LinkStateError) =>
  page(input, 400, `state_${error.problem}`, "Sign-in link not accepted", error.message)

/** The provider's part of the flow failed: a type for the JSON, words for the page. */
export class ProviderError extends Data.TaggedError("ProviderError")<{
  readonly type: string
  readonly message: string
}> {}

/** Why the provider's part of the flow failed. */
const providerProblem = (error: unknown): ProviderError => new ProviderError(describeProblem(error))

const describeProblem = (error: unknown): { readonly type: string; readonly message: string } => {
  if (error instanceof oauth.AuthorizationResponseError) {
    return {
      type: "provider_refused",
      message: `the sign-in provider refused: ${error.error}${
        error.error_description === undefined ? "" : ` (${error.error_description})`
      }; ask for a new link and try again`
    }
  }
  if (error instanceof oauth.ResponseBodyError) {
    return {
      type: "token_exchange_failed",
      message: `the sign-in provider did not accept the code: ${error.error}; ask for a new link and try again`
    }
  }
  if (error instanceof oauth.OperationProcessingError) {
    return { type: "id_token_invalid", message: `the sign-in provider's answer failed validation: ${error.message}` }
  }
  const message = error instanceof Error ? error.message : String(error)
  return { type: "provider_unavailable", message: `the sign-in provider could not be reached: ${message}` }
}

export interface OidcLinker extends IdentityLinker.IdentityLinkerShape {
  readonly linking: ChannelLinking
  readonly routes: { readonly path: string; readonly routes: ReadonlyArray<Route> }
}

/** The linker; it keeps links (and its generated state key) in the state store. */
export const make = Effect.fn("OidcLinker.make")(function*(settings: OidcSettings) {
  const store = yield* StateStore
  const issuer = new URL(settings.issuer)
  const base = settings.redirectBaseUrl.replace(/\/+$/, "")
  const path = joinPath(settings.path ?? "/link", "").replace(/\/+$/, "") || "/link"
  const redirectUri = `${base}${path}/callback`
  const secureCookie = base.startsWith("https:")
  const ttl = Duration.decode(settings.stateTtl ?? Duration.minutes(10))
  // A used state must stay remembered as long as its signature holds: else a replay after the prune would pass.
  if (Duration.greaterThan(ttl, LinkState.seenWindow)) {
    return yield* Effect.dieMessage(
      `OidcLinker: stateTtl ${Duration.format(ttl)} is longer than the ${
        Duration.format(LinkState.seenWindow)
      } a used sign-in state is remembered; use a shorter stateTtl`
    )
  }
  const timeout = Duration.toMillis(Duration.decode(settings.providerTimeout ?? Duration.seconds(10)))
  const scopes = settings.scopes ?? "openid email profile"
  const keep = settings.claims ?? defaultClaims
  const linkSessions = settings.linkSessions === true
  const maxLinks = settings.maxLinksPerPerson ?? 20
  const maxAge = settings.maxAge === undefined ? undefined : Duration.decode(settings.maxAge)
  // OIDC counts `max_age` and `auth_time` in whole seconds.
  const maxAgeSeconds = maxAge === undefined ? undefined : Math.max(1, Math.floor(Duration.toSeconds(maxAge)))
  const key = yield* LinkState.loadKey(store, Option.fromNullable(settings.stateKey))
  const insecure = issuer.protocol === "http:" && (loopback(issuer) || settings.allowHttp === true)
  const client: oauth.Client = { client_id: settings.clientId }
  const clientAuth = settings.clientSecret === undefined ?
    oauth.None() :
    settings.clientAuth === "post" ?
    oauth.ClientSecretPost(Redacted.value(settings.clientSecret)) :
    oauth.ClientSecretBasic(Redacted.value(settings.clientSecret))
  // oauth4webapi's JWKS cache: a plain object it fills and reads (one provider, one cache).
  const jwks: oauth.JWKSCacheInput = {} as oauth.JWKSCacheInput
  const http = () => ({ [oauth.allowInsecureRequests]: insecure, signal: AbortSignal.timeout(timeout) })

  // Discovery on first use, kept once it succeeds; a failure is not kept (the next sign-in tries again).
  let discovered: oauth.AuthorizationServer | undefined
  const discover = Effect.suspend(() =>
    discovered !== undefined ? Effect.succeed(discovered) : Effect.tryPromise({
      try: async () =>
        oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...http(), algorithm: "oidc" })),
      catch: providerProblem
    }).pipe(Effect.tap((as) => Effect.sync(() => discovered = as)))
  )

  // A group chat's identity is the group; the person is its speaker (`attributes.user_id`).
  const personOf = (identity: ChannelIdentity): ChannelIdentity => {
    const speaker = identity.attributes?.user_id
    if ((typeof speaker === "number" || typeof speaker === "string") && String(speaker) !== identity.nativeId) {
      return { channel: identity.channel, nativeId: String(speaker) }
    }
    return identity
  }

  const personKey = (iss: string, sub: string) =>
    `oidc:${createHash("sha256").update(`${iss}\n${sub}`).digest("base64url").slice(0, 32)}`

  const offer = Effect.fn("OidcLinker.offer")(function*(identity: ChannelIdentity) {
    const person = personOf(identity)
    const id = yield* LinkState.newId
    const expiresAt = Time.plus(yield* Time.now, ttl)
    // The label comes from the identity as the channel saw it: in a group, its attributes describe the speaker.
    const state = key.sign({
      channel: person.channel,
      nativeId: person.nativeId,
      expiresAt,
      id,
      label: labelOf(identity)
    })
    return {
      challengeId: id,
      url: `${base}${path}/start?state=${state}`,
      expiresAt,
      message: `Sign in to link your account (the link is valid for ${Math.round(Duration.toMinutes(ttl))} minutes).`
    } satisfies LinkOffer
  })

  const viewOf = (link: IdentityLink) =>
    Effect.map(store.linksFor(link.isolationKey), (all): LinkView => ({
      identity: { channel: link.channel, nativeId: link.nativeId } as ChannelIdentity,
      subject: link.subject,
      isolationKey: link.isolationKey,
      claims: readClaims(link.claims),
      linkedAt: link.linkedAt,
      linkedIdentities: all.map((l) => ({ channel: l.channel, nativeId: l.nativeId }) as ChannelIdentity)
    }))

  const linking: ChannelLinking = {
    offer,
    linkOf: (identity) => {
      const person = personOf(identity)
      return Effect.flatMap(store.getLink(person.channel, person.nativeId), (found) =>
        Option.match(found, {
          onNone: () => Effect.succeedNone,
          onSome: (link) => Effect.map(viewOf(link), Option.some)
        }))
    },
    unlink: (identity) => {
      const person = personOf(identity)
      return Effect.tap(
        store.deleteLink(person.channel, person.nativeId),
        (removed) =>
          removed ?
            Effect.logInfo("identity unlinked").pipe(Effect.annotateLogs({ identity: logName(person) })) :
            Effect.void
      )
    }
  }

  // Only the person's own chats share the key: a group keeps its own conversation.
  const sharedKey = (identity: ChannelIdentity) =>
    personOf(identity) !== identity ?
      Effect.succeedNone :
      Effect.map(store.getLink(identity.channel, identity.nativeId), Option.map((link) => link.isolationKey))

  const resolve = Effect.fn("OidcLinker.resolve")(function*(identity: ChannelIdentity) {
    const person = personOf(identity)
    const link = yield* store.getLink(person.channel, person.nativeId)
    if (Option.isNone(link)) {
      const challenge = yield* offer(identity)
      return IdentityLinker.challenge(challenge)
    }
    if (maxAge !== undefined && Time.plus(signedInAt(link.value), maxAge) < (yield* Time.now)) {
      const challenge = yield* offer(identity)
      return IdentityLinker.challenge({
        ...challenge,
        message: `Your sign-in is older than ${Duration.format(maxAge)}, the most this host accepts: sign in ` +
          `again to continue (the link is valid for ${Math.round(Duration.toMinutes(ttl))} minutes).`
      })
    }
    // A group keeps its own conversation; the person's shared key applies to their own chats.
    const isolationKey = person === identity ? link.value.isolationKey : identityToken(identity)
    return IdentityLinker.linked(isolationKey, readClaims(link.value.claims), "linker")
  })

  // --- routes -------------------------------------------------------------------------------------------------

  /** The state of a request: signed by this host, not expired. */
  const checkState = (token: string | null): Effect.Effect<Either.Either<LinkStatePayload, LinkStateError>> =>
    Effect.map(Time.now, (now) => {
      if (token === null || token.length === 0) return Either.left(LinkState.missing)
      return Either.flatMap(key.verify(token), (payload) => LinkState.checkExpiry(payload, now))
    })

  const cookieOf = (input: RouteInput): string | undefined => {
    const header = input.request.headers.cookie
    if (typeof header !== "string") return undefined
    for (const part of header.split(";")) {
      const eq = part.indexOf("=")
      if (eq > 0 && part.slice(0, eq).trim() === stateCookie) return part.slice(eq + 1).trim()
    }
    return undefined
  }

  const cookie = (value: string, maxAge: number) =>
    `${stateCookie}=${value}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secureCookie ? "; Secure" : ""}`

  /**
   * `GET <path>/start`: a page naming the identity being linked, with a button that posts the state back. Opening a
   * link never reaches the provider by itself: whoever opened a link someone else forwarded sees whose chat
   * identity their sign-in would attach to, and can stop.
   */
  const confirm = (input: RouteInput) =>
    Effect.gen(function*() {
      const token = input.query.get("state")
      const checked = yield* checkState(token)
      if (Either.isLeft(checked)) return refused(input, checked.left)
      const payload = checked.right
      const who = `${payload.channel} user ${payload.label ?? payload.nativeId}`
      const question = `Link ${who} to your account?`
      const warning = "Continue only if you asked for this link yourself in that chat: the account you sign in " +
        "with next is linked to it, and whoever uses that chat acts with your account's access."
      const accept = String(input.request.headers.accept ?? "")
      if (accept.includes("application/json") && !accept.includes("text/html")) {
        return Response.text(JSON.stringify({ status: "confirm", message: `${question} ${warning}` }), {
          status: 200,
          contentType: "application/json",
          headers: { "cache-control": "no-store" }
        })
      }
      const html = `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" ` +
        `content="width=device-width"><title>Link your account</title></head><body data-status="confirm">` +
        `<h1>${escapeHtml(question)}</h1><p>${escapeHtml(warning)}</p>` +
        `<form method="post" action="${escapeHtml(`${base}${path}/start`)}">` +
        `<input type="hidden" name="state" value="${escapeHtml(token!)}">` +
        `<button type="submit">Continue to sign in</button></form></body></html>`
      return Response.text(html, {
        status: 200,
        contentType: "text/html; charset=utf-8",
        headers: {
          "cache-control": "no-store",
          // Not `no-referrer`: the browser would then send `Origin: null` with the button's post, which is refused.
          // The provider still gets no referrer (another origin).
          "referrer-policy": "same-origin",
          // The page is never framed (no clickjacking of the button) and runs no script. (No `form-action`: the
          // post's redirect to the provider would break it.)
          "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
          "x-frame-options": "DENY"
        }
      })
    })

  const origin = new URL(base).origin

  /**
   * A post from another site's page (a form that submits itself) would skip the confirmation: a browser names the
   * page a post comes from (`Origin`, `Sec-Fetch-Site`), and only this host's own page may post.
   */
  const crossSite = (input: RouteInput): boolean => {
    const from = input.request.headers.origin
    if (typeof from === "string" && from !== origin) return true
    const site = input.request.headers["sec-fetch-site"]
    return typeof site === "string" && site !== "same-origin" && site !== "none"
  }

  /** `POST <path>/start` (the confirmation's button, the state in the form): on to the provider. */
  const start = (input: RouteInput) =>
    Effect.gen(function*() {
      if (crossSite(input)) {
        return page(
          input,
          403,
          "cross_site_post",
          "Sign-in not started",
          "the sign-in must be confirmed on this host's own page; open the link you were sent"
        )
      }
      const body = yield* Effect.either(readText(input.request, maxConfirmBytes))
      if (Either.isLeft(body)) {
        const problem = describeBodyError(body.left)
        return page(input, problem.status, problem.type, "Sign-in not started", problem.message)
      }
      const token = new URLSearchParams(body.right).get("state")
      const checked = yield* checkState(token)
      if (Either.isLeft(checked)) return refused(input, checked.left)
      const payload = checked.right
      const as = yield* Effect.either(discover)
      if (Either.isLeft(as)) {
        const problem = as.left
        yield* Effect.logWarning("OIDC discovery failed", problem.message)
        return page(input, 400, problem.type, "Sign-in is not available", problem.message)
      }
      if (as.right.authorization_endpoint === undefined) {
        return page(
          input,
          400,
          "provider_misconfigured",
          "Sign-in is not available",
          "the provider has no authorization endpoint"
        )
      }
      const challenge = yield* Effect.promise(() => oauth.calculatePKCECodeChallenge(key.codeVerifier(payload.id)))
      const target = new URL(as.right.authorization_endpoint)
      target.searchParams.set("response_type", "code")
      target.searchParams.set("client_id", settings.clientId)
      target.searchParams.set("redirect_uri", redirectUri)
      target.searchParams.set("scope", scopes)
      target.searchParams.set("state", token!)
      target.searchParams.set("nonce", key.nonce(payload.id))
      target.searchParams.set("code_challenge", challenge)
      target.searchParams.set("code_challenge_method", "S256")
      if (maxAgeSeconds !== undefined) target.searchParams.set("max_age", String(maxAgeSeconds))
      const maxAge = Math.max(1, Math.ceil((payload.expiresAt - (yield* Time.now)) / 1000))
      // 303: the browser follows with a GET.
      return Response.empty({
        status: 303,
        headers: {
          location: target.href,
          "set-cookie": cookie(payload.id, maxAge),
          "cache-control": "no-store",
          "referrer-policy": "no-referrer"
        }
      })
    })

  const exchange = (as: oauth.AuthorizationServer, params: URLSearchParams, payload: LinkStatePayload) =>
    Effect.tryPromise({
      try: async () => {
        const response = await oauth.authorizationCodeGrantRequest(
          as,
          client,
          clientAuth,
          params,
          redirectUri,
          key.codeVerifier(payload.id),
          http()
        )
        const result = await oauth.processAuthorizationCodeResponse(as, client, response, {
          expectedNonce: key.nonce(payload.id),
          requireIdToken: true,
          // With `max_age` sent, the ID token must say when the person signed in, and not longer ago than that.
          ...(maxAgeSeconds === undefined ? {} : { maxAge: maxAgeSeconds })
        })
        // The token came over TLS from the token endpoint, but the issue's rule is stricter: no link from a claim
        // the provider did not sign, so the signature is checked against its JWKS too.
        await oauth.validateApplicationLevelSignature(as, response, { ...http(), [oauth.jwksCache]: jwks })
        return oauth.getValidatedIdTokenClaims(result)!
      },
      catch: providerProblem
    })

  const callback = (input: RouteInput) =>
    Effect.gen(function*() {
      const token = input.query.get("state")
      const checked = yield* checkState(token)
      if (Either.isLeft(checked)) return refused(input, checked.left)
      const payload = checked.right
      if (cookieOf(input) !== payload.id) return refused(input, LinkState.mismatched)
      const clear = { "set-cookie": cookie("", 0) }
      // Used up before anything else: a second callback with the same state is a replay, whatever happens next.
      const fresh = yield* store.markSeen(LinkState.seenNamespace, payload.id, LinkState.seenWindow)
      if (!fresh) return refused(input, LinkState.replayed)
      const params = new URLSearchParams(input.query)
      const linked = yield* Effect.gen(function*() {
        const as = yield* discover
        const validated = yield* Effect.try({
          try: () => oauth.validateAuthResponse(as, client, params, token!),
          catch: providerProblem
        })
        return yield* exchange(as, validated, payload)
      }).pipe(Effect.either)
      if (Either.isLeft(linked)) {
        const problem = linked.left
        yield* Effect.logWarning("identity link failed").pipe(
          Effect.annotateLogs({ reason: problem.type, detail: problem.message, channel: payload.channel })
        )
        return page(input, 400, problem.type, "Sign-in failed", problem.message, clear)
      }
      const idToken = linked.right
      if (
        settings.requireVerifiedEmail === true && (typeof idToken.email !== "string" || idToken.email_verified !== true)
      ) {
        return page(
          input,
          403,
          "email_not_verified",
          "Email not verified",
          "this sign-in requires a verified email address; verify it with your provider and ask for a new link",
          clear
        )
      }
      const claims: Record<string, string | ReadonlyArray<string>> = { sub: idToken.sub, iss: idToken.iss }
      // When the person signed in (epoch seconds, as the provider signed it): the age a link is judged by.
      if (typeof idToken.auth_time === "number") claims.auth_time = String(idToken.auth_time)
      for (const name of keep) {
        const value = claimValue(idToken[name])
        if (value !== undefined) claims[name] = value
      }
      // An unverified email is not a verified claim.
      if (idToken.email_verified !== true) delete claims.email
      const identity = { channel: payload.channel, nativeId: payload.nativeId } as ChannelIdentity
      const isolationKey = linkSessions ? personKey(idToken.iss, idToken.sub) : identityToken(identity)
      // Bounded: `all_linked` fans out to every identity linked to the key.
      const existing = yield* store.linksFor(isolationKey)
      const relink = existing.some((l) => l.channel === identity.channel && l.nativeId === identity.nativeId)
      if (!relink && existing.length >= maxLinks) {
        return page(
          input,
          409,
          "too_many_links",
          "Too many linked accounts",
          `this account is already linked to ${existing.length} chat identities, the most allowed; unlink one (/unlink) and try again`,
          clear
        )
      }
      yield* store.putLink({
        channel: payload.channel,
        nativeId: payload.nativeId,
        isolationKey,
        subject: idToken.sub,
        claims,
        linkedAt: yield* Time.now
      })
      yield* Effect.logInfo("identity linked").pipe(
        Effect.annotateLogs({ identity: logName(identity), subject: idToken.sub })
      )
      const who = typeof claims.email === "string" ? claims.email : idToken.sub
      return page(
        input,
        200,
        "linked",
        "Account linked",
        `${payload.channel} user ${
          payload.label ?? payload.nativeId
        } is now linked to ${who}. You can close this page and go back to the chat.`,
        clear
      )
    })

  // A route never fails: whatever slips through is a 400 page, logged.
  const guard =
    (handler: (input: RouteInput) => Effect.Effect<HttpServerResponse.HttpServerResponse>) => (input: RouteInput) =>
      handler(input).pipe(
        Effect.catchAllCause((cause) =>
          Effect.as(
            Effect.logError("identity link route failed", cause),
            page(input, 400, "link_failed", "Sign-in failed", "the sign-in could not be completed; ask for a new link")
          )
        )
      )

  const routes: ReadonlyArray<Route> = [
    { method: "GET", path: "/start", handler: guard(confirm) },
    { method: "POST", path: "/start", handler: guard(start) },
    { method: "GET", path: "/callback", handler: guard(callback) }
  ]

  return {
    available: true,
    resolve,
    ...(linkSessions ? { sharedKey } : {}),
    linking,
    routes: { path, routes }
  } satisfies OidcLinker
})

/** The OIDC linker as the host's `IdentityLinker` (its routes and channel commands come with it). */
export const layer = (settings: OidcSettings): Layer.Layer<IdentityLinker.IdentityLinker, never, StateStore> =>
  Layer.effect(IdentityLinker.IdentityLinker, make(settings))

const list = (name: string, fallback: ReadonlyArray<string>) =>
  Config.string(name).pipe(
    Config.map((raw) => raw.split(/[\s,]+/).filter((s) => s.length > 0) as ReadonlyArray<string>),
    Config.withDefault(fallback)
  )

/**
 * Settings from the environment, none when `AGENT_HOST_OIDC_ISSUER` is unset: `AGENT_HOST_OIDC_CLIENT_ID`,
 * `_CLIENT_SECRET`, `_CLIENT_AUTH` (basic|post), `_REDIRECT_BASE_URL`, `_SCOPES`, `_REQUIRE_VERIFIED_EMAIL`,
 * `_CLAIMS`, `_ALLOW_HTTP`; `AGENT_HOST_LINK_SESSIONS`, `AGENT_HOST_LINK_STATE_KEY`, `AGENT_HOST_LINK_PATH`,
 * `AGENT_HOST_LINK_MAX_AGE` (a duration: `12 hours`).
 */
export const config: Config.Config<Option.Option<OidcSettings>> = Config.all({
  issuer: Config.option(Config.nonEmptyString("AGENT_HOST_OIDC_ISSUER")),
  clientId: Config.option(Config.nonEmptyString("AGENT_HOST_OIDC_CLIENT_ID")),
  clientSecret: Config.option(Config.redacted("AGENT_HOST_OIDC_CLIENT_SECRET")),
  clientAuth: Config.literal("basic", "post")("AGENT_HOST_OIDC_CLIENT_AUTH").pipe(Config.withDefault("basic")),
  redirectBaseUrl: Config.option(Config.nonEmptyString("AGENT_HOST_OIDC_REDIRECT_BASE_URL")),
  scopes: Config.string("AGENT_HOST_OIDC_SCOPES").pipe(Config.withDefault("openid email profile")),
  requireVerifiedEmail: Config.boolean("AGENT_HOST_OIDC_REQUIRE_VERIFIED_EMAIL").pipe(Config.withDefault(false)),
  claims: list("AGENT_HOST_OIDC_CLAIMS", defaultClaims),
  allowHttp: Config.boolean("AGENT_HOST_OIDC_ALLOW_HTTP").pipe(Config.withDefault(false)),
  linkSessions: Config.boolean("AGENT_HOST_LINK_SESSIONS").pipe(Config.withDefault(false)),
  stateKey: Config.option(Config.redacted("AGENT_HOST_LINK_STATE_KEY")),
  path: Config.string("AGENT_HOST_LINK_PATH").pipe(Config.withDefault("/link")),
  maxAge: Config.option(Config.duration("AGENT_HOST_LINK_MAX_AGE"))
}).pipe(
  Config.mapOrFail((raw): Either.Either<Option.Option<OidcSettings>, ConfigError.ConfigError> => {
    if (Option.isNone(raw.issuer)) return Either.right(Option.none())
    const missing = (name: string, why: string) => Either.left(ConfigError.MissingData([name], why))
    if (Option.isNone(raw.clientId)) {
      return missing(
        "AGENT_HOST_OIDC_CLIENT_ID",
        "AGENT_HOST_OIDC_ISSUER is set: the client id registered with it is required"
      )
    }
    if (Option.isNone(raw.redirectBaseUrl)) {
      return missing(
        "AGENT_HOST_OIDC_REDIRECT_BASE_URL",
        "AGENT_HOST_OIDC_ISSUER is set: the host's public base URL (the provider redirects to <base>/link/callback) is required"
      )
    }
    for (
      const [name, value] of [["AGENT_HOST_OIDC_ISSUER", raw.issuer.value], [
        "AGENT_HOST_OIDC_REDIRECT_BASE_URL",
        raw.redirectBaseUrl.value
      ]] as const
    ) {
      if (!URL.canParse(value)) return Either.left(ConfigError.InvalidData([name], `"${value}" is not a URL`))
    }
    return Either.right(Option.some({
      issuer: raw.issuer.value,
      clientId: raw.clientId.value,
      clientSecret: Option.getOrUndefined(raw.clientSecret),
      clientAuth: raw.clientAuth,
      redirectBaseUrl: raw.redirectBaseUrl.value,
      scopes: raw.scopes,
      requireVerifiedEmail: raw.requireVerifiedEmail,
      claims: raw.claims,
      allowHttp: raw.allowHttp,
      linkSessions: raw.linkSessions,
      stateKey: Option.getOrUndefined(raw.stateKey),
      path: raw.path,
      ...(Option.isSome(raw.maxAge) ? { maxAge: raw.maxAge.value } : {})
    }))
  })
)

/** The linker the environment configures: OIDC when `AGENT_HOST_OIDC_ISSUER` is set, none otherwise. */
export const layerConfig: Layer.Layer<IdentityLinker.IdentityLinker, ConfigError.ConfigError, StateStore> = Layer
  .unwrapEffect(
    Effect.map(config, (settings) => Option.isSome(settings) ? layer(settings.value) : IdentityLinker.layerNone)
  )
