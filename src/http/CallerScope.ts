/**
 * Who a programmatic caller is, for scoping the names it picks (an MCP `session`, an A2A `contextId`): the
 * trusted user isolation key when the host has one, else the API key it authenticated with, so two clients
 * holding different keys that pick the same name get separate sessions.
 */
import { createHash } from "node:crypto"
import type { IncomingRequest } from "./IncomingRequest.js"
import { userScopedKey } from "./UserScope.js"

/**
 * The caller's scope: the user key, else `key:<digest of the bearer token>` when API keys are configured (the
 * token itself is never kept), else undefined (one shared namespace: the host is open).
 */
export const callerOf = (
  request: IncomingRequest,
  /** The trusted user isolation key, if any. */
  user: string | undefined,
  apiKeysConfigured: boolean
): string | undefined => {
  if (user !== undefined) return user
  if (!apiKeysConfigured) return undefined
  const header = request.headers["authorization"]
  if (header === undefined || !header.toLowerCase().startsWith("bearer ")) return undefined
  return `key:${createHash("sha256").update(header.slice(7).trim()).digest("base64url").slice(0, 22)}`
}

/** `name` in the caller's namespace (see `userScopedKey`). */
export const callerScopedKey = (caller: string | undefined, name: string): string => userScopedKey(caller, name)
