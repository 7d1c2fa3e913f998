/**
 * Discord signs every interaction it posts: `X-Signature-Ed25519` is the hex Ed25519 signature of
 * `X-Signature-Timestamp` followed by the raw body, made with the application's key. A request that does not
 * verify is answered 401 (Discord sends such requests on purpose and disables the endpoint if they are accepted);
 * a timestamp far from now is refused too, so a captured request cannot be replayed later.
 */
import { Duration, Either } from "effect"
import * as Crypto from "node:crypto"

/** How far a signed timestamp may be from now (either way, for clock skew) before the request is refused. */
export const defaultMaxSkew: Duration.Duration = Duration.minutes(5)

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const HEX_SIGNATURE = /^[0-9a-fA-F]{128}$/
const TIMESTAMP = /^\d{1,12}$/

/**
 * The application's public key (64 hex characters, from the Developer Portal) as a node:crypto key, or why it
 * is not one.
 */
export const publicKey = (hex: string): Either.Either<Crypto.KeyObject, string> => {
  const trimmed = hex.trim()
  if (!HEX_KEY.test(trimmed)) {
    return Either.left("the Discord public key must be 64 hexadecimal characters (DISCORD_PUBLIC_KEY)")
  }
  try {
    const x = Buffer.from(trimmed, "hex").toString("base64url")
    return Either.right(Crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" }))
  } catch (error) {
    return Either.left(`the Discord public key is not an Ed25519 key: ${String(error)}`)
  }
}

export interface Signed {
  readonly signature: string | undefined
  readonly timestamp: string | undefined
  readonly body: Uint8Array
}

/**
 * Checks a request's signature and timestamp against `key` at `nowMillis`; the failure names what is wrong
 * (never which byte).
 */
export const verify = (
  key: Crypto.KeyObject,
  signed: Signed,
  nowMillis: number,
  maxSkew: Duration.Duration = defaultMaxSkew
): Either.Either<void, string> => {
  const { body, signature, timestamp } = signed
  if (signature === undefined || timestamp === undefined) {
    return Either.left("the X-Signature-Ed25519 and X-Signature-Timestamp headers are required")
  }
  if (!HEX_SIGNATURE.test(signature) || !TIMESTAMP.test(timestamp)) {
    return Either.left("the request signature is malformed")
  }
  const skew = Math.abs(nowMillis - Number(timestamp) * 1000)
  if (skew > Duration.toMillis(maxSkew)) {
    return Either.left(`the signature timestamp is more than ${Duration.format(maxSkew)} from now`)
  }
  const message = Buffer.concat([Buffer.from(timestamp, "utf8"), body])
  const ok = Crypto.verify(null, message, key, Buffer.from(signature, "hex"))
  return ok ? Either.void : Either.left("the request signature does not verify")
}
