/**
 * Signing keys for inbound tokens: an OpenID metadata document names a JWKS; its keys are cached and fetched again
 * when a token names a key id the cache lacks (key rollover), at most once per `minRefreshInterval` so forged
 * key ids cannot make us hammer the key endpoint, and in any case after `maxAge`. One fetch at a time.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Duration, Effect, Schema, SynchronizedRef } from "effect"
import type { EpochMillis } from "../../domain/Time.js"
import * as Time from "../../domain/Time.js"

/** The keys could not be fetched or read. */
export class KeysUnavailable extends Schema.TaggedError<KeysUnavailable>()("KeysUnavailable", {
  url: Schema.String,
  message: Schema.String
}) {}

/** A JWK as the metadata serves it; Bot Framework keys also name the channels they may sign for. */
export const Jwk = Schema.Struct(
  {
    kid: Schema.String,
    kty: Schema.String,
    endorsements: Schema.optional(Schema.Array(Schema.String))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type Jwk = typeof Jwk.Type

const Jwks = Schema.Struct({ keys: Schema.Array(Schema.Unknown).pipe(Schema.maxItems(200)) })
const Metadata = Schema.Struct({ jwks_uri: Schema.String })

export interface KeySet {
  /** The key with id `kid`, fetching the set again when it is not cached; undefined when the issuer has none. */
  readonly find: (kid: string) => Effect.Effect<Jwk | undefined, KeysUnavailable>
  /** Fetches the set now (startup check). */
  readonly load: Effect.Effect<void, KeysUnavailable>
}

export interface Source {
  /** An OpenID metadata document whose `jwks_uri` names the keys... */
  readonly metadataUrl?: string
  /** ...or the JWKS itself. */
  readonly jwksUrl?: string
}

interface Cache {
  readonly keys: ReadonlyMap<string, Jwk>
  readonly fetchedAt: EpochMillis | undefined
}

const decodeJwk = Schema.decodeUnknownEither(Jwk)

export const make = (
  source: Source,
  options: { readonly minRefreshInterval?: Duration.DurationInput; readonly maxAge?: Duration.DurationInput } = {}
): Effect.Effect<KeySet, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const minRefresh = Duration.toMillis(options.minRefreshInterval ?? "30 seconds")
    const maxAge = Duration.toMillis(options.maxAge ?? "24 hours")
    const url = source.jwksUrl ?? source.metadataUrl ?? ""
    const cache = yield* SynchronizedRef.make<Cache>({ keys: new Map(), fetchedAt: undefined })

    const unavailable = (message: string) =>
      new KeysUnavailable({ url, message: `signing keys from ${url}: ${message}` })

    const getJson = <A, I>(target: string, schema: Schema.Schema<A, I>): Effect.Effect<A, KeysUnavailable> =>
      client.execute(HttpClientRequest.get(target, { acceptJson: true })).pipe(
        Effect.flatMap((response): Effect.Effect<A, unknown> =>
          response.status === 200 ?
            Effect.flatMap(response.json, Schema.decodeUnknown(schema)) :
            Effect.fail(unavailable(`HTTP ${response.status}`))
        ),
        Effect.timeout("10 seconds"),
        Effect.mapError((error) =>
          error instanceof KeysUnavailable ? error : unavailable(error instanceof Error ? error.message : String(error))
        )
      )

    const fetchKeys = Effect.gen(function*() {
      const jwksUrl = source.jwksUrl ?? (yield* getJson(source.metadataUrl ?? "", Metadata)).jwks_uri
      const jwks = yield* getJson(jwksUrl, Jwks)
      const keys = new Map<string, Jwk>()
      for (const raw of jwks.keys) {
        const key = decodeJwk(raw)
        if (key._tag === "Right") keys.set(key.right.kid, key.right)
      }
      return keys
    }).pipe(Effect.withSpan("Activity.Keys.fetch", { attributes: { url } }))

    const refresh = (force: boolean, kid: string | undefined) =>
      SynchronizedRef.modifyEffect(cache, (current) =>
        Effect.gen(function*() {
          const now = yield* Time.now
          const age = current.fetchedAt === undefined ? Infinity : now - current.fetchedAt
          const cached = kid === undefined ? undefined : current.keys.get(kid)
          // Another fiber may have fetched while this one waited; a recent fetch is not repeated for a forged kid.
          const stale = age >= maxAge
          const missing = kid !== undefined && cached === undefined && age >= minRefresh
          if (!force && !stale && !missing) return [cached, current] as const
          const keys = yield* fetchKeys
          const next: Cache = { keys, fetchedAt: now }
          return [kid === undefined ? undefined : keys.get(kid), next] as const
        }))

    const find = (kid: string) =>
      Effect.flatMap(SynchronizedRef.get(cache), (current) =>
        Effect.flatMap(Time.now, (now) => {
          const fresh = current.fetchedAt !== undefined && now - current.fetchedAt < maxAge
          const key = current.keys.get(kid)
          return fresh && key !== undefined ? Effect.succeed(key) : refresh(false, kid)
        }))

    return { find, load: Effect.asVoid(refresh(true, undefined)) }
  })
