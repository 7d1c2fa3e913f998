/**
 * `x-request-id` on every response: the caller's value when it is sane (1-128 visible ASCII characters, so it
 * is safe in a header and a log line), else a fresh id from the CSPRNG pool (`req_` + 32 hex digits). The
 * request's headers then carry the id too, so a handler can put it in an error body.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { randomId } from "../domain/Ids.js"

export const HEADER = "x-request-id"

const sane = /^[\x21-\x7e]{1,128}$/

/** The id of this request: the caller's when sane, else a new one. */
export const requestIdOf = (value: string | ReadonlyArray<string> | undefined): string =>
  typeof value === "string" && sane.test(value) ? value : `req_${randomId()}`

/** Sets the response's `x-request-id` (before anything is written) and returns it. */
export const stamp = (request: IncomingMessage, response: ServerResponse): string => {
  const given = request.headers[HEADER]
  const id = requestIdOf(given)
  if (id !== given) request.headers[HEADER] = id
  response.setHeader(HEADER, id)
  return id
}
