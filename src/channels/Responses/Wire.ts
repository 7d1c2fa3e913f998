/**
 * The Responses API wire: the request body as accepted (OpenAI's `CreateResponseBody`, plus the host's
 * `response_target` extension) and the error envelope. Input items are decoded by hand in `Request.ts`, where
 * each problem can name its exact `param` (`input[2].content[0].image_url`).
 */
import { Either, ParseResult, Schema } from "effect"
import * as OpenAiErrors from "../shared/OpenAiErrors.js"

const nullable = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

const FunctionToolParam = Schema.Struct({
  type: Schema.Literal("function"),
  name: Schema.String.pipe(
    Schema.pattern(/^[a-zA-Z0-9_-]{1,64}$/, {
      message: () => "a function tool name is 1-64 characters of a-z, A-Z, 0-9, '_' or '-'"
    })
  ),
  description: nullable(Schema.String),
  parameters: nullable(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  strict: nullable(Schema.Boolean)
})

const SpecificFunction = Schema.Struct({ type: Schema.Literal("function"), name: Schema.String })

const ToolChoiceParam = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  SpecificFunction,
  Schema.Struct({
    type: Schema.Literal("allowed_tools"),
    tools: Schema.Array(SpecificFunction).pipe(Schema.minItems(1), Schema.maxItems(128)),
    mode: Schema.optional(Schema.Literal("none", "auto", "required"))
  })
)

const TextFormatParam = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }),
  Schema.Struct({ type: Schema.Literal("json_object") }),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    name: Schema.String,
    description: nullable(Schema.String),
    schema: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
    strict: nullable(Schema.Boolean)
  })
)

const MetadataParam = Schema.Record({
  key: Schema.String.pipe(Schema.maxLength(64, { message: () => "metadata keys are at most 64 characters" })),
  value: Schema.String.pipe(Schema.maxLength(512, { message: () => "metadata values are at most 512 characters" }))
}).pipe(
  Schema.filter((m) => Object.keys(m).length <= 16 || "metadata has at most 16 keys")
)

const range = (min: number, max: number, name: string) =>
  Schema.Number.pipe(
    Schema.filter((n) => (n >= min && n <= max) || `${name} must be between ${min} and ${max}`)
  )

export const CreateResponseBody = Schema.Struct({
  model: nullable(Schema.String),
  input: nullable(Schema.Union(Schema.String, Schema.Array(Schema.Unknown))),
  instructions: nullable(Schema.String),
  previous_response_id: nullable(Schema.String.pipe(Schema.minLength(1))),
  conversation: nullable(
    Schema.Union(
      Schema.String.pipe(Schema.minLength(1)),
      Schema.Struct({ id: Schema.String.pipe(Schema.minLength(1)) })
    )
  ),
  tools: nullable(Schema.Array(FunctionToolParam)),
  tool_choice: nullable(ToolChoiceParam),
  parallel_tool_calls: nullable(Schema.Boolean),
  metadata: nullable(MetadataParam),
  text: nullable(Schema.Struct({
    format: nullable(TextFormatParam),
    verbosity: nullable(Schema.Literal("low", "medium", "high"))
  })),
  temperature: nullable(range(0, 2, "temperature")),
  top_p: nullable(range(0, 1, "top_p")),
  presence_penalty: nullable(range(-2, 2, "presence_penalty")),
  frequency_penalty: nullable(range(-2, 2, "frequency_penalty")),
  max_output_tokens: nullable(Schema.Int.pipe(Schema.greaterThanOrEqualTo(16))),
  max_tool_calls: nullable(Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))),
  top_logprobs: nullable(Schema.Int.pipe(Schema.between(0, 20))),
  stream: nullable(Schema.Boolean),
  background: nullable(Schema.Boolean),
  store: nullable(Schema.Boolean),
  user: nullable(Schema.String),
  safety_identifier: nullable(Schema.String.pipe(Schema.maxLength(64))),
  prompt_cache_key: nullable(Schema.String.pipe(Schema.maxLength(64))),
  truncation: nullable(Schema.Literal("auto", "disabled")),
  service_tier: nullable(Schema.Literal("auto", "default", "flex", "priority", "scale")),
  reasoning: nullable(Schema.Struct({
    effort: nullable(Schema.Literal("none", "minimal", "low", "medium", "high", "xhigh")),
    summary: nullable(Schema.Literal("concise", "detailed", "auto"))
  })),
  include: nullable(Schema.Array(Schema.String)),
  /** Host extension (send with `extra_body`): where the reply goes. Parsed in `Request.ts`. */
  response_target: Schema.optional(Schema.Unknown),
  /** Host extension: `cancel` cancels the turn when the caller goes away (default `continue`). */
  on_disconnect: Schema.optional(Schema.Unknown)
})
export type CreateResponseBody = typeof CreateResponseBody.Type

const decodeBody = Schema.decodeUnknownEither(CreateResponseBody, { errors: "first", onExcessProperty: "ignore" })

/** A request problem with the parameter it concerns, as OpenAI reports it. */
export interface WireProblem {
  readonly message: string
  readonly param: string | null
}

const pathToParam = (path: ReadonlyArray<PropertyKey>): string | null => {
  let out = ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else out += out.length === 0 ? String(key) : `.${String(key)}`
  }
  return out.length === 0 ? null : out
}

/** The schema's decode, with the first problem and the parameter it concerns. */
export const decodeCreateBodyWithSchema = (raw: unknown): { readonly body: CreateResponseBody } | WireProblem => {
  const decoded = decodeBody(raw)
  if (decoded._tag === "Right") return { body: decoded.right }
  const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
  if (issue === undefined) return { message: "the request body is not a valid Responses request", param: null }
  const param = pathToParam(issue.path)
  return { message: param === null ? issue.message : `${param}: ${issue.message}`, param }
}

const isString = (v: unknown) => v == null || typeof v === "string"
const isNonEmpty = (v: unknown) => v == null || (typeof v === "string" && v.length > 0)
const isShort = (v: unknown) => v == null || (typeof v === "string" && v.length <= 64)
const isBoolean = (v: unknown) => v == null || typeof v === "boolean"
const inRange = (min: number, max: number) => (v: unknown) =>
  v == null || (typeof v === "number" && v >= min && v <= max)
const isIntFrom = (min: number, max = Number.MAX_SAFE_INTEGER) => (v: unknown) =>
  v == null || (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max)
const isOneOf = (values: ReadonlyArray<string>) => (v: unknown) => v == null || values.includes(v as string)
const anything = () => true

/**
 * The fields whose schema is a plain type check, as that check. A body made only of these (and fields the
 * schema does not know, which it ignores) needs no decode; anything else, or a value that fails its check, goes
 * through the schema, which names the problem precisely.
 */
const plainChecks: ReadonlyMap<string, (value: unknown) => boolean> = new Map(Object.entries({
  model: isString,
  input: (v) => v == null || typeof v === "string" || Array.isArray(v),
  instructions: isString,
  previous_response_id: isNonEmpty,
  conversation: isNonEmpty,
  parallel_tool_calls: isBoolean,
  temperature: inRange(0, 2),
  top_p: inRange(0, 1),
  presence_penalty: inRange(-2, 2),
  frequency_penalty: inRange(-2, 2),
  max_output_tokens: isIntFrom(16),
  max_tool_calls: isIntFrom(1),
  top_logprobs: isIntFrom(0, 20),
  stream: isBoolean,
  background: isBoolean,
  store: isBoolean,
  user: isString,
  safety_identifier: isShort,
  prompt_cache_key: isShort,
  truncation: isOneOf(["auto", "disabled"]),
  service_tier: isOneOf(["auto", "default", "flex", "priority", "scale"]),
  response_target: anything,
  on_disconnect: anything
}))

const schemaFields: ReadonlySet<string> = new Set(Object.keys(CreateResponseBody.fields))

/**
 * The request body as a `CreateResponseBody`, or its first problem. A body of plain fields (the usual
 * `{ model, input, stream }`) is checked by hand and used as it is (fields the schema does not know stay in it);
 * any other goes through the schema.
 */
export const decodeCreateBody = (raw: unknown): { readonly body: CreateResponseBody } | WireProblem => {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return decodeCreateBodyWithSchema(raw)
  const body = raw as Record<string, unknown>
  for (const key in body) {
    const check = plainChecks.get(key)
    if (check !== undefined ? !check(body[key]) : schemaFields.has(key)) return decodeCreateBodyWithSchema(raw)
  }
  return { body: body as CreateResponseBody }
}

/** OpenAI's error envelope; a 503 has the type `rate_limit_error` here (`server_error` in Chat Completions). */
export const { errorResponse, errorType } = OpenAiErrors.make({ unavailable: "rate_limit_error" })

/** OpenAI's list parameters (`limit` 1–100, default 20; `order` asc|desc, default desc; `after`). */
export interface ListQuery {
  readonly limit: number
  readonly order: "asc" | "desc"
  readonly after: string | null
}

/** Reads a list route's query, or the 400 answer naming the bad parameter. */
export const listQuery = (query: URLSearchParams): Either.Either<ListQuery, ReturnType<typeof errorResponse>> => {
  const rawLimit = query.get("limit")
  const limit = rawLimit === null ? 20 : Number(rawLimit)
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    return Either.left(errorResponse(400, "invalid_request", "limit must be an integer between 1 and 100", "limit"))
  }
  const order = query.get("order") ?? "desc"
  if (order !== "asc" && order !== "desc") {
    return Either.left(errorResponse(400, "invalid_request", "order must be asc or desc", "order"))
  }
  return Either.right({ limit, order, after: query.get("after") })
}

/** Why a create is refused: an HTTP answer, or a WebSocket `error` event, in OpenAI's error fields. */
export interface Refusal {
  readonly status: number
  readonly code: string
  readonly message: string
  readonly param: string | null
  readonly headers?: Record<string, string> | undefined
}

/** What a continuation needs of the response it continues: its session, and the tool calls it made. */
export interface Previous {
  readonly sessionKey: string
  readonly callIds: ReadonlyArray<string>
}

/** The call ids of a response resource's `function_call` output items. */
export const callIdsOf = (response: unknown): ReadonlyArray<string> => {
  const output = (response as { readonly output?: unknown } | null)?.output
  if (!Array.isArray(output)) return []
  const ids: Array<string> = []
  for (const item of output) {
    const i = item as { readonly type?: unknown; readonly call_id?: unknown } | null
    if (i?.type === "function_call" && typeof i.call_id === "string") ids.push(i.call_id)
  }
  return ids
}
