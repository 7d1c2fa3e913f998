/**
 * The bot's outbound token: OAuth2 client credentials against Entra
 * (`POST {login}/{tenant}/oauth2/v2.0/token`, scope `https://api.botframework.com/.default`; tenant
 * `botframework.com` for multi-tenant bots). Cached, and fetched again five minutes before it expires; one fetch
 * at a time, so a burst of replies at expiry makes one request.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { Redacted } from "effect"
import { Duration, Effect, Redacted as RedactedModule, Schema, SynchronizedRef } from "effect"
import type { EpochMillis } from "../../domain/Time.js"
import * as Time from "../../domain/Time.js"

export const BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"

/** No token: Entra refused the credentials (`status` 400/401) or could not be reached (`status` 0, 5xx). */
export class TokenUnavailable extends Schema.TaggedError<TokenUnavailable>()("TokenUnavailable", {
  status: Schema.Number,
  message: Schema.String
}) {}

export interface Options {
  readonly appId: string
  readonly password: Redacted.Redacted<string>
  /** The tenant to ask; `botframework.com` for multi-tenant bots. */
  readonly tenant: string
  /** Default https://login.microsoftonline.com. */
  readonly loginUrl?: string
  readonly scope?: string
  /** How long before expiry a token is replaced (default 5 minutes). */
  readonly refreshBefore?: Duration.DurationInput
}

export interface Tokens {
  readonly get: Effect.Effect<string, TokenUnavailable>
  /** Drops the cached token (the connector answered 401 with it). */
  readonly invalidate: Effect.Effect<void>
}

const TokenResponse = Schema.Struct({
  access_token: Schema.String,
  expires_in: Schema.Union(Schema.Number, Schema.NumberFromString)
})

interface Cached {
  readonly token: string
  readonly expiresAt: EpochMillis
}

export const make = (options: Options): Effect.Effect<Tokens, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = (yield* HttpClient.HttpClient).pipe(HttpClient.withTracerDisabledWhen(() => true))
    const loginUrl = (options.loginUrl ?? "https://login.microsoftonline.com").replace(/\/+$/, "")
    const url = `${loginUrl}/${encodeURIComponent(options.tenant)}/oauth2/v2.0/token`
    const margin = Duration.toMillis(options.refreshBefore ?? "5 minutes")
    const cache = yield* SynchronizedRef.make<Cached | undefined>(undefined)

    const fail = (status: number, message: string) =>
      new TokenUnavailable({ status, message: `bot token from ${url}: ${message}` })

    const fetchToken = Effect.gen(function*() {
      const request = HttpClientRequest.post(url).pipe(
        HttpClientRequest.bodyUrlParams({
          grant_type: "client_credentials",
          client_id: options.appId,
          client_secret: RedactedModule.value(options.password),
          scope: options.scope ?? BOT_FRAMEWORK_SCOPE
        })
      )
      const response = yield* client.execute(request).pipe(
        Effect.timeout("15 seconds"),
        Effect.mapError((error) => fail(0, error.message))
      )
      const body = yield* Effect.orElseSucceed(response.json, () => undefined)
      if (response.status !== 200) {
        const described = typeof body === "object" && body !== null && "error" in body ?
          String((body as { error: unknown }).error) :
          `HTTP ${response.status}`
        return yield* fail(response.status, `${described} (check MICROSOFT_APP_ID/PASSWORD/TENANT_ID)`)
      }
      const token = yield* Schema.decodeUnknown(TokenResponse)(body).pipe(
        Effect.mapError(() => fail(502, "the answer is not a token response"))
      )
      const now = yield* Time.now
      return { token: token.access_token, expiresAt: Time.plus(now, Duration.seconds(token.expires_in)) }
    }).pipe(Effect.withSpan("Activity.Token.fetch"))

    const get = SynchronizedRef.modifyEffect(cache, (current) =>
      Effect.flatMap(Time.now, (now) =>
        current !== undefined && now < current.expiresAt - margin ?
          Effect.succeed([current.token, current] as const) :
          Effect.map(fetchToken, (fresh) =>
            [fresh.token, fresh] as const)))

    return { get, invalidate: SynchronizedRef.set(cache, undefined) }
  })
