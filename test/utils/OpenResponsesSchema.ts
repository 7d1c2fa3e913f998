/**
 * Validators for the Open Responses spec (`test/fixtures/openresponses-openapi.json`): the response
 * resource, the streaming events, and output items, with the spec's `$ref`s resolved by ajv.
 */
import { Ajv } from "ajv"
import addFormatsModule from "ajv-formats"
import { readFileSync } from "node:fs"

// A copy of the Open Responses OpenAPI document (Apache-2.0), kept with the tests so they run anywhere.
const SPEC_PATH = new URL("../fixtures/openresponses-openapi.json", import.meta.url)
const spec = JSON.parse(readFileSync(SPEC_PATH, "utf8")) as {
  readonly paths: Record<
    string,
    Record<string, { responses: Record<string, { content: Record<string, { schema: unknown }> }> }>
  >
}

// ajv-formats is CommonJS with a default export; NodeNext sees the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv
) => void

const ajv = new Ajv({ strict: false, allErrors: true })
addFormats(ajv)
ajv.addSchema(spec as object, "openresponses")

const ref = (name: string) => ({ $ref: `openresponses#/components/schemas/${name}` })

const responseResource = ajv.compile(ref("ResponseResource"))
const itemField = ajv.compile(ref("ItemField"))
const streamSchema = spec.paths["/responses"]!["post"]!.responses["200"]!.content["text/event-stream"]!.schema as {
  readonly oneOf: ReadonlyArray<{ readonly $ref: string }>
}
const streamEvent = ajv.compile({
  oneOf: streamSchema.oneOf.map((r) => ({ $ref: r.$ref.replace("#/", "openresponses#/") }))
})

const check = (validate: ReturnType<Ajv["compile"]>, what: string, value: unknown): void => {
  if (!validate(value)) {
    throw new Error(
      `${what} does not match the Open Responses spec: ${ajv.errorsText(validate.errors?.slice(0, 8))}\n${
        JSON.stringify(value).slice(0, 2000)
      }`
    )
  }
}

export const assertResponseResource = (value: unknown): void => check(responseResource, "ResponseResource", value)
export const assertItem = (value: unknown): void => check(itemField, "ItemField", value)
export const assertStreamEvent = (value: unknown): void => check(streamEvent, "streaming event", value)

const webSocketError = ajv.compile(ref("WebSocketErrorEvent"))
const webSocketCreate = ajv.compile(ref("WebSocketResponseCreateEvent"))
const compactResource = ajv.compile(ref("CompactResource"))

export const assertWebSocketError = (value: unknown): void => check(webSocketError, "WebSocketErrorEvent", value)
export const assertWebSocketCreate = (value: unknown): void =>
  check(webSocketCreate, "WebSocketResponseCreateEvent", value)
export const assertCompactResource = (value: unknown): void => check(compactResource, "CompactResource", value)
