/**
 * The `state` of an account-linking flow: a short-lived token, HMAC-signed by the host, bound to the channel
 * identity that asked to link. It is the link URL's parameter and the OAuth `state` at once; the PKCE verifier
 * and the ID token nonce are derived from it with the same key, so nothing about a flow in progress is stored
 * until its callback marks the token used (single use).
 *
 * The key comes from config, or is generated once and kept in the state store (so links started before a
 * restart still complete after it; in memory mode the key lives as long as the process).
 */
import type { Redacted } from "effect"
import { Duration, Effect, Either, Option, Redacted as RedactedModule, Schema } from "effect"
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { issueId } from "../domain/Ids.js"
import { EpochMillis } from "../domain/Time.js"
import type { StateStoreShape } from "../state/StateStore.js"

/** Why a state token was refused; each maps to a 4xx the browser is shown. */
export type LinkStateProblem = "missing" | "malformed" | "forged" | "expired" | "replayed" | "mismatched"

export class LinkStateError extends Schema.TaggedError<LinkStateError>()("LinkStateError", {
  problem: Schema.Literal("missing", "malformed", "forged", "expired", "replayed", "mismatched"),
  message: Schema.String
}) {}

/** What a state token carries. */
export interface LinkStatePayload {
  /** The channel of the identity being linked. */
  readonly channel: string
  readonly nativeId: string
  /** After this the token is refused. */
  readonly expiresAt: EpochMillis
  /** Random id: the single-use key, and the seed of the PKCE verifier and nonce. */
  readonly id: string
  /** How the confirmation page names the identity (a username, a display name), when the channel gave one. */
  readonly label?: string | undefined
}

const version = "v1"
const b64 = (bytes: Buffer) => bytes.toString("base64url")

export interface LinkStateKey {
  readonly sign: (payload: LinkStatePayload) => string
  /** The payload of a token this key signed, or why it is not one (not checked: expiry and use). */
  readonly verify: (token: string) => Either.Either<LinkStatePayload, LinkStateError>
  /** The PKCE code verifier of flow `id` (43 base64url characters). */
  readonly codeVerifier: (id: string) => string
  readonly nonce: (id: string) => string
}

const Payload = Schema.Struct({
  c: Schema.String,
  n: Schema.String,
  e: EpochMillis,
  j: Schema.String,
  d: Schema.optional(Schema.String)
})
const decodePayload = Schema.decodeUnknownEither(Schema.parseJson(Payload))

const problem = (kind: LinkStateProblem, message: string) => new LinkStateError({ problem: kind, message })

export const keyFrom = (secret: Uint8Array): LinkStateKey => {
  const mac = (purpose: string, data: string) => createHmac("sha256", secret).update(`${purpose}\u0000${data}`).digest()
  return {
    sign: (payload) => {
      const body = b64(
        Buffer.from(JSON.stringify({
          c: payload.channel,
          n: payload.nativeId,
          e: payload.expiresAt,
          j: payload.id,
          ...(payload.label === undefined ? {} : { d: payload.label })
        }))
      )
      return `${version}.${body}.${b64(mac("state", body))}`
    },
    verify: (token) => {
      const parts = token.split(".")
      if (parts.length !== 3 || parts[0] !== version || parts[1]!.length === 0 || parts[1]!.length > 2048) {
        return Either.left(problem("malformed", "the sign-in link is not one this host issued"))
      }
      const given = Buffer.from(parts[2]!, "base64url")
      const expected = mac("state", parts[1]!)
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        return Either.left(problem("forged", "the sign-in link's signature does not match; ask for a new link"))
      }
      const decoded = decodePayload(Buffer.from(parts[1]!, "base64url").toString("utf8"))
      if (Either.isLeft(decoded)) return Either.left(problem("malformed", "the sign-in link is not readable"))
      const p = decoded.right
      return Either.right({ channel: p.c, nativeId: p.n, expiresAt: p.e, id: p.j, label: p.d })
    },
    codeVerifier: (id) => b64(mac("pkce", id)),
    nonce: (id) => b64(mac("nonce", id))
  }
}

/** The store cursor the generated key is kept under. */
export const keyCursor = "auth:link-state-key"

/**
 * The signing key: `configured` when given, else the one kept in the state store, generated (256 CSPRNG bits)
 * on first use.
 */
export const loadKey = (
  store: Pick<StateStoreShape, "getCursor" | "setCursor">,
  configured: Option.Option<Redacted.Redacted<string>>
): Effect.Effect<LinkStateKey> =>
  Effect.gen(function*() {
    if (Option.isSome(configured)) {
      // Any length of configured secret: hashed to the 32 bytes HMAC-SHA256 wants.
      return keyFrom(createHash("sha256").update(RedactedModule.value(configured.value)).digest())
    }
    const stored = yield* store.getCursor(keyCursor)
    if (Option.isSome(stored)) return keyFrom(Buffer.from(stored.value, "base64url"))
    const fresh = randomBytes(32)
    yield* store.setCursor(keyCursor, b64(fresh))
    return keyFrom(fresh)
  })

/**
 * How long a used state's id is remembered (`StateStore.markSeen`): at least the longest a state lives, so a state
 * is refused as replayed while its signature would still pass, and as expired after its seen row is pruned.
 */
export const seenWindow: Duration.Duration = Duration.hours(1)

/** The namespace of used states in `StateStore.markSeen`. */
export const seenNamespace = "auth:link-state"

/** A new flow id from the CSPRNG. */
export const newId: Effect.Effect<string> = issueId("")

/** Checks a verified payload's expiry against `now`. */
export const checkExpiry = (
  payload: LinkStatePayload,
  now: EpochMillis
): Either.Either<LinkStatePayload, LinkStateError> =>
  now > payload.expiresAt ?
    Either.left(problem("expired", "the sign-in link has expired; ask for a new one (it is valid for 10 minutes)")) :
    Either.right(payload)

export const replayed = problem(
  "replayed",
  "this sign-in link was already used; ask for a new one"
)

export const mismatched = problem(
  "mismatched",
  "this sign-in did not start in this browser; open the link you were sent in the same browser and try again"
)

export const missing = problem("missing", "the request carries no sign-in state; open the link you were sent")
