/**
 * Bearer API keys for programmatic channels, compared in constant time.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type { IncomingRequest } from "./IncomingRequest.js"

const digest = (s: string) => createHash("sha256").update(s).digest()

/**
 * Whether `Authorization: Bearer <key>` carries one of `keys`; false when `keys` is empty. Every configured key
 * is compared (no early exit), on fixed-length digests, so timing says nothing about the keys.
 */
export const makeMatcher = (keys: ReadonlyArray<string>) => {
  const digests = keys.map(digest)
  return (request: IncomingRequest): boolean => {
    if (digests.length === 0) return false
    const header = request.headers["authorization"]
    if (header === undefined || !header.toLowerCase().startsWith("bearer ")) return false
    const candidate = digest(header.slice(7).trim())
    let ok = false
    for (const d of digests) {
      if (timingSafeEqual(candidate, d)) ok = true
    }
    return ok
  }
}

/** A checker for `Authorization: Bearer <key>`; with no keys configured every request passes. */
export const makeChecker = (keys: ReadonlyArray<string>) => {
  const matches = makeMatcher(keys)
  return (request: IncomingRequest): boolean => keys.length === 0 || matches(request)
}
