/**
 * The request body of a JSON route as a JSON object, or the problem to answer with: one mapping for every
 * channel (each wraps status, type and message in its own envelope).
 */
import { Effect } from "effect"
import type { BodyError, JsonLimits } from "./HttpBody.js"
import { describeBodyError, readJsonWith } from "./HttpBody.js"

export interface BodyProblem {
  readonly _tag: "BodyProblem"
  /** What went wrong: a body error's tag, or `NotAnObject` (valid JSON, but not an object). */
  readonly reason: BodyError["_tag"] | "NotAnObject"
  /** 413 past the size limit, else 400. */
  readonly status: number
  /** `request_too_large`, `invalid_json`, `invalid_encoding`, `json_too_complex` or `invalid_request`. */
  readonly type: string
  readonly message: string
}

const notAnObject: BodyProblem = {
  _tag: "BodyProblem",
  reason: "NotAnObject",
  status: 400,
  type: "invalid_request",
  message: "the request body must be a JSON object"
}

const problemOf = (error: BodyError): BodyProblem => ({
  _tag: "BodyProblem",
  reason: error._tag,
  ...describeBodyError(error)
})

const asObject = (value: unknown): Effect.Effect<Record<string, unknown>, BodyProblem> =>
  value !== null && typeof value === "object" && !Array.isArray(value) ?
    Effect.succeed(value as Record<string, unknown>) :
    Effect.fail(notAnObject)

export const readJsonObject = (
  request: Parameters<typeof readJsonWith>[0],
  limits: number | JsonLimits
): Effect.Effect<Record<string, unknown>, BodyProblem> => readJsonWith(request, limits, asObject, problemOf)
