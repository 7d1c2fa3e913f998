/**
 * Secrets that double as ids (a web chat browser id is a bearer for its conversations) are never logged, traced or
 * counted: `tag` names one by a short, non-reversible digest instead, the same for the same id, so log lines about
 * one browser still line up.
 */
import { createHash } from "node:crypto"

/** The first 8 hex digits of the SHA-256 of `secret`. */
export const tag = (secret: string): string => createHash("sha256").update(secret).digest("hex").slice(0, 8)

/**
 * An identity token (`channel:native_id`) as logs show it: `channel:#<tag>`. Anything without a native id part (a
 * channel name, `active`) is kept.
 */
export const token = (value: string): string => {
  const colon = value.indexOf(":")
  return colon < 0 ? value : `${value.slice(0, colon)}:#${tag(value.slice(colon + 1))}`
}
