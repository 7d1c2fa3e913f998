/**
 * Scoping caller-chosen names (an Invocations `session_id`, a Responses conversation's session) to the trusted
 * user isolation key, so two users naming the same id get separate sessions.
 */
import { createHash } from "node:crypto"

/**
 * `key` inside the user's own namespace: `user.<digest of the user key>:<key>` (the digest keeps the key short
 * and unambiguous; no channel-derived key starts with `user.`, since channel names have no dot). Unchanged when
 * there is no user key.
 */
export const userScopedKey = (user: string | undefined, key: string): string =>
  user === undefined ? key : `user.${createHash("sha256").update(user).digest("base64url").slice(0, 22)}:${key}`

/**
 * Whether a record created under `recorded` (a user key, or none) belongs to a caller with `caller`: the same
 * user key, or none on both sides.
 */
export const sameUser = (recorded: string | undefined, caller: string | undefined): boolean => recorded === caller
