/**
 * The caller's choice of what its disconnect does to its turn: a request body field (`on_disconnect`) or the
 * `x-agent-on-disconnect` header, else the channel's default. See `OnDisconnect` in Sessions.
 */
import type { OnDisconnect } from "../core/Sessions.js"
import type { IncomingRequest } from "./IncomingRequest.js"

export const ON_DISCONNECT_HEADER = "x-agent-on-disconnect"

const isOnDisconnect = (value: unknown): value is OnDisconnect => value === "continue" || value === "cancel"

/**
 * The body field wins over the header, the header over `fallback`. A value that is neither `continue` nor
 * `cancel` is a problem naming where it came from.
 */
export const onDisconnectOf = (
  request: IncomingRequest,
  field: unknown,
  fallback: OnDisconnect
): OnDisconnect | { readonly message: string; readonly param: string } => {
  if (field !== undefined && field !== null) {
    return isOnDisconnect(field) ?
      field :
      { message: "on_disconnect must be \"continue\" or \"cancel\"", param: "on_disconnect" }
  }
  const header = request.headers[ON_DISCONNECT_HEADER]
  if (header === undefined || header === "") return fallback
  return isOnDisconnect(header) ?
    header :
    { message: `header ${ON_DISCONNECT_HEADER} must be "continue" or "cancel"`, param: ON_DISCONNECT_HEADER }
}
