/**
 * Branded identifiers shared by the host and every channel.
 */
import { Effect, Either, Schema } from "effect"
import { createHash, randomFillSync } from "node:crypto"
import { InvalidIsolationKey } from "./Errors.js"

/** A channel's name: lower-case, stable, used in routes, isolation keys and response targets. */
export const ChannelName = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9_-]{0,63}$/, {
    message: () => "a channel name is 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter"
  }),
  Schema.brand("ChannelName")
)
export type ChannelName = typeof ChannelName.Type

const controlCharacters = /[\u0000-\u001f\u007f]/

/**
 * An isolation key as telemetry may show it: the first 16 hex digits of its SHA-256. Correlates a session's turns
 * across spans without revealing the key (a key is often a user or chat id).
 */
export const isolationKeyDigest = (key: string): string => createHash("sha256").update(key).digest("hex").slice(0, 16)

/** Why a string is not a valid isolation key, or undefined when it is one. */
export const isolationKeyProblem = (key: string): string | undefined => {
  if (key.length === 0) return "must not be empty"
  if (key.length > 256) return "must be at most 256 characters"
  if (controlCharacters.test(key)) return "must not contain control characters"
  return undefined
}

/** The key that partitions sessions and storage: `telegram:42`, `invocations:abc`, a trusted header value. */
export const IsolationKey = Schema.String.pipe(
  Schema.filter((key) => {
    const problem = isolationKeyProblem(key)
    return problem === undefined ? true : `isolation key ${problem}`
  }),
  Schema.brand("IsolationKey")
)
export type IsolationKey = typeof IsolationKey.Type

/**
 * `key` as an `IsolationKey`, checked as the schema checks it (a plain check: no decode on the hot path), or the
 * `InvalidIsolationKey` a channel answers with (400).
 */
export const isolationKey = (key: string): Either.Either<IsolationKey, InvalidIsolationKey> => {
  const problem = isolationKeyProblem(key)
  return problem === undefined ?
    Either.right(key as IsolationKey) :
    Either.left(new InvalidIsolationKey({ key: key.slice(0, 300), message: `isolation key ${problem}` }))
}

/** A response id (`resp_...`). */
export const ResponseId = Schema.String.pipe(Schema.minLength(1), Schema.brand("ResponseId"))
export type ResponseId = typeof ResponseId.Type

/**
 * A fresh identifier from the CSPRNG: `prefix` and 128 random bits as 32 lower-case hex digits (URL-, header-
 * and isolation-key-safe). Every id that acts as a handle or bearer token (response ids, session ids, task ids,
 * reset aliases) comes from here, never from Effect's seedable `Random`, whose seed can be recovered from a few
 * observed ids.
 */
export const issueId = (prefix = ""): Effect.Effect<string> => Effect.sync(() => `${prefix}${randomHex128()}`)

/** `issueId` without the effect, for synchronous code on the hot path (request ids in the HTTP listener). */
export const randomId = (): string => randomHex128()

/**
 * 128 CSPRNG bits as hex, drawn from a pool filled 4 KiB at a time: one `randomFillSync` per 256 ids instead of
 * one `randomBytes` call (and its buffer) per id. The pool is process state, but it only caches entropy: no id
 * depends on another, and every byte is used once.
 */
const randomHex128: () => string = (() => {
  const pool = Buffer.allocUnsafe(4096)
  let offset = pool.length
  return () => {
    if (offset + 16 > pool.length) {
      randomFillSync(pool)
      offset = 0
    }
    const hex = pool.toString("hex", offset, offset + 16)
    offset += 16
    return hex
  }
})()
