/**
 * CORS for browser clients, off unless origins are configured (`AGENT_HOST_CORS_ORIGINS`). An allowed origin's
 * requests get `access-control-allow-origin` (its own origin, or `*` when `*` is configured) and the headers a
 * client reads exposed; its preflight (`OPTIONS` with `access-control-request-method`) is answered here with 204,
 * the methods, the headers it asked for and a max-age. Any other origin gets no CORS headers (the browser then
 * withholds the response) and its preflight a 403. Every response says `vary: origin`, so a cache never serves
 * one origin's answer to another. API keys still guard the routes: CORS only decides what a browser may read.
 */
import type { IncomingMessage, ServerResponse } from "node:http"

const METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
/** Always allowed in a preflight; other requested names are echoed when they are plain header names. */
const BASE_HEADERS = [
  "authorization",
  "content-type",
  "x-request-id",
  "openai-beta",
  "openai-organization",
  "openai-project",
  "idempotency-key",
  "last-event-id"
]
const EXPOSED = "x-request-id, x-session-id, retry-after, openai-processing-ms, openai-version"
/** How long a browser may cache a preflight answer. */
export const MAX_AGE_SECONDS = 600

const headerName = /^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/

/** Why an `AGENT_HOST_CORS_ORIGINS` entry is not an origin, or undefined when it is one (or `*`). */
export const originProblem = (origin: string): string | undefined => {
  if (origin === "*") return undefined
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return `${JSON.stringify(origin)} is not an origin (scheme://host[:port])`
  }
  if (url.origin === "null" || url.origin !== origin.toLowerCase().replace(/\/$/, "")) {
    return `${JSON.stringify(origin)} is not an origin: write scheme://host[:port], without a path`
  }
  return undefined
}

const forbidden = JSON.stringify({
  error: { message: "this origin is not allowed (AGENT_HOST_CORS_ORIGINS)", type: "cors_error", code: "cors_denied" }
})

/**
 * The CORS step of the listener, or undefined when CORS is off. It sets the CORS headers of the response (before
 * anything is written) and returns true when it answered the request itself (a preflight).
 */
export const make = (
  origins: ReadonlyArray<string>
): ((request: IncomingMessage, response: ServerResponse) => boolean) | undefined => {
  if (origins.length === 0) return undefined
  const any = origins.includes("*")
  const allowed = new Set(origins.map((o) => o.toLowerCase().replace(/\/$/, "")))
  return (request, response) => {
    response.setHeader("vary", "origin")
    const origin = request.headers.origin
    const preflight = request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined
    if (origin === undefined) return false
    if (!any && !allowed.has(origin.toLowerCase())) {
      if (!preflight) return false
      response.writeHead(403, { "content-type": "application/json" })
      response.end(forbidden)
      return true
    }
    response.setHeader("access-control-allow-origin", any ? "*" : origin)
    if (!preflight) {
      response.setHeader("access-control-expose-headers", EXPOSED)
      return false
    }
    const names = new Set(BASE_HEADERS)
    const asked = request.headers["access-control-request-headers"]
    if (asked !== undefined) {
      for (const raw of asked.split(",")) {
        const name = raw.trim().toLowerCase()
        if (headerName.test(name)) names.add(name)
      }
    }
    response.writeHead(204, {
      "access-control-allow-methods": METHODS,
      "access-control-allow-headers": [...names].join(", "),
      "access-control-max-age": String(MAX_AGE_SECONDS),
      "content-length": "0"
    })
    response.end()
    return true
  }
}
