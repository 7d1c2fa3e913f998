/**
 * The request a route handler sees: a plain view of the `node:http` request, built once per request without
 * copying anything (the platform's request object costs a class instance, lazy getters and a fiber per body read).
 */
import type * as Headers from "@effect/platform/Headers"
import type { IncomingMessage } from "node:http"

export interface IncomingRequest {
  readonly method: string
  /** The request target as sent: path and query string (`/v1/responses?stream=true`). */
  readonly url: string
  /** Node's headers, lower-cased names; typed as the platform's `Headers` (the same object, not a copy). */
  readonly headers: Headers.Headers
  /** The Node request: read the body from it (`HttpBody.readJson`). */
  readonly source: IncomingMessage
  readonly remoteAddress: string | undefined
}

export const fromNode = (source: IncomingMessage): IncomingRequest => ({
  method: source.method ?? "GET",
  url: source.url ?? "/",
  // Node's record has the same shape (lower-case name → value); only `set-cookie` may be an array, and no
  // request carries it.
  headers: source.headers as unknown as Headers.Headers,
  source,
  remoteAddress: source.socket?.remoteAddress
})
