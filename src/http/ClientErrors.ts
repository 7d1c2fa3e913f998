/**
 * Describing failures of outgoing HTTP calls (Bot API, Discord, connectors) for logs and typed errors.
 */
import type { HttpClientError } from "@effect/platform"

/**
 * An error's message with its causes (`fetch failed: connect ECONNREFUSED ...`), at most four deep. For an
 * `HttpClientError` its description, never its `message`: that names the URL, which may carry a token.
 */
export const describeTransportError = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const isHttpError = typeof current === "object" && "_tag" in current &&
      (current._tag === "RequestError" || current._tag === "ResponseError")
    if (isHttpError) {
      const e = current as HttpClientError.HttpClientError
      parts.push(e.description ?? `${e.reason} error`)
    } else {
      parts.push(current instanceof Error ? current.message : String(current))
    }
    current = typeof current === "object" && "cause" in current ? current.cause : undefined
  }
  return parts.join(": ")
}
