/**
 * How a failed turn is answered over HTTP: one mapping from `TurnError` to a status, headers and the body's
 * parts; each channel wraps the parts in its own envelope (the host's `{ error: { message, type } }`, OpenAI's
 * `{ error: { message, type, param, code } }`, an SSE error frame).
 */
import type { TurnError } from "../domain/Errors.js"
import { isShutdown, turnErrorHeaders, turnErrorStatus } from "../domain/Errors.js"
import { errorJson } from "./HttpBody.js"

export interface TurnErrorParts {
  readonly status: number
  /** `retry-after` (and `connection: close` at shutdown) when the caller should come back later. */
  readonly headers: Record<string, string> | undefined
  /** The host envelope's `type`: the error's tag (`agent_error` for the target's failures). */
  readonly type: string
  /** A stable snake_case code (`session_busy`, `server_shutting_down`, an access decision's reason code). */
  readonly code: string
  readonly message: string
  /** The request field at fault (`InvalidRequest`). */
  readonly param: string | undefined
  /** Where to link an account (`LinkRequiredError`). */
  readonly url: string | undefined
  /** Names the failure in the host's log (`AgentError`). */
  readonly requestId: string | undefined
}

const codeOf = (error: TurnError): string => {
  switch (error._tag) {
    case "InvalidRequest":
      return "invalid_request"
    case "InvalidIsolationKey":
      return "invalid_isolation_key"
    case "SessionBusy":
      return "session_busy"
    case "SessionCapacityExceeded":
      return "capacity_exceeded"
    case "MailboxFull":
      return "session_queue_full"
    case "PushQueueFull":
      return "push_queue_full"
    case "TurnCancelled":
      return isShutdown(error) ? "server_shutting_down" : "turn_cancelled"
    case "AccessDenied":
      return error.reasonCode.length > 0 ? error.reasonCode : "access_denied"
    case "LinkRequiredError":
      return "link_required"
    case "AgentError":
      return "server_error"
  }
}

export const describeTurnError = (error: TurnError): TurnErrorParts => ({
  status: turnErrorStatus(error),
  headers: turnErrorHeaders(error),
  type: error._tag === "AgentError" ? "agent_error" : error._tag,
  code: codeOf(error),
  message: error.message,
  param: error._tag === "InvalidRequest" ? error.param : undefined,
  url: error._tag === "LinkRequiredError" ? error.url : undefined,
  requestId: error._tag === "AgentError" ? error.requestId : undefined
})

/** The host envelope's extra fields: `url` to link an account, `request_id` of a target failure. */
export const extraFields = (parts: TurnErrorParts): Record<string, string> | undefined =>
  parts.url !== undefined ?
    { url: parts.url } :
    parts.requestId !== undefined ?
    { request_id: parts.requestId } :
    undefined

/** A failed turn in the host's plain envelope: `{ error: { message, type, url?, request_id? } }`. */
export const turnErrorJson = (error: TurnError) => {
  const parts = describeTurnError(error)
  return errorJson(parts.status, parts.type, parts.message, extraFields(parts), parts.headers)
}
