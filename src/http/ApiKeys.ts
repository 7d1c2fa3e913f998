/**
 * Bearer API keys for programmatic channels, compared in constant time.
 */
import type { HttpServerRequest } from "@effect/platform"
import { createHash, timingSafeEqual } from "node:crypto"

const digest = (s: string) => createHash("sha256").update(s).digest()

/** A checker for `Authorization: Bearer <key>`; with no keys configured every request passes. */
export const makeChecker = (keys: ReadonlyArray<string>) => {
  const digests = keys.map(digest)
  return (request: HttpServerRequest.HttpServerRequest): boolean => {
    if (digests.length === 0) return true
    const header = request.headers["authorization"]
    if (header === undefined || !header.toLowerCase().startsWith("bearer ")) return false
    const candidate = digest(header.slice(7).trim())
    let ok = false
    for (const d of digests) {
      // No early exit: every configured key is compared.
      if (timingSafeEqual(candidate, d)) ok = true
    }
    return ok
  }
}
