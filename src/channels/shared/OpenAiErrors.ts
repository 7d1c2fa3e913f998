/**
 * OpenAI's error envelope, `{ "error": { "message", "type", "param", "code" } }`, for the channels that speak an
 * OpenAI API (Responses, Chat Completions). They differ on the type of a 503.
 */
import type { HttpServerResponse } from "@effect/platform"
import { json } from "../../http/HttpBody.js"

export interface OpenAiErrors {
  /** OpenAI's error `type` for an HTTP status. */
  readonly errorType: (status: number) => string
  /** The envelope as a response. */
  readonly errorResponse: (
    status: number,
    code: string,
    message: string,
    param?: string | null,
    headers?: Record<string, string>
  ) => HttpServerResponse.HttpServerResponse
  /** The envelope as a JSON value (an SSE error frame). */
  readonly errorBody: (
    status: number,
    code: string,
    message: string,
    param?: string | null
  ) => { readonly error: { message: string; type: string; param: string | null; code: string } }
}

/** The envelope of an API whose 503 has the type `unavailable` (`server_error`, or `rate_limit_error`). */
export const make = (options: { readonly unavailable: "server_error" | "rate_limit_error" }): OpenAiErrors => {
  const errorType = (status: number): string => {
    if (status === 401) return "authentication_error"
    if (status === 403) return "permission_error"
    if (status === 404) return "not_found_error"
    if (status === 409) return "conflict_error"
    if (status === 429) return "rate_limit_error"
    if (status === 503) return options.unavailable
    if (status >= 500) return "server_error"
    return "invalid_request_error"
  }
  const errorBody: OpenAiErrors["errorBody"] = (status, code, message, param = null) => ({
    error: { message, type: errorType(status), param, code }
  })
  return {
    errorType,
    errorBody,
    errorResponse: (status, code, message, param = null, headers) =>
      json(errorBody(status, code, message, param), status, headers)
  }
}
