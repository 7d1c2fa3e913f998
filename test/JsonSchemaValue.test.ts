import { assert, describe, it } from "@effect/vitest"
import { Ajv } from "ajv"
import addFormatsModule from "ajv-formats"
import { JSONSchema, Schema } from "effect"
import { argumentsFor, placeIn, valueFor } from "../src/domain/JsonSchemaValue.js"

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv
) => void
const ajv = new Ajv({ strict: false, allErrors: true })
addFormats(ajv)

const assertValid = (schema: object, value: unknown) => {
  const validate = ajv.compile(schema)
  assert.isTrue(validate(value), `${JSON.stringify(value)} invalid: ${ajv.errorsText(validate.errors)}`)
}

const Address = Schema.Struct({ street: Schema.String, zip: Schema.String.pipe(Schema.pattern(/^\d{5}$/)) })

const cases: ReadonlyArray<readonly [string, object]> = [
  ["string", { type: "string" }],
  ["bounded string", { type: "string", minLength: 12, maxLength: 14 }],
  ["formats", {
    type: "object",
    properties: {
      when: { type: "string", format: "date-time" },
      day: { type: "string", format: "date" },
      mail: { type: "string", format: "email" },
      link: { type: "string", format: "uri" },
      id: { type: "string", format: "uuid" }
    },
    required: ["when", "day", "mail", "link", "id"],
    additionalProperties: false
  }],
  ["pattern", { type: "string", pattern: "^[A-Z]{3}$" }],
  ["pattern with groups", { type: "string", pattern: "^(?:foo|bar)-[a-z]+_\\d{2,4}\\.txt$" }],
  ["pattern with minLength", { type: "string", pattern: "^[0-9a-f]+", minLength: 8 }],
  ["integer bounds", { type: "integer", minimum: 5, maximum: 9 }],
  ["exclusive and multipleOf", { type: "number", exclusiveMinimum: 10, multipleOf: 0.5 }],
  ["negative range", { type: "integer", maximum: -3 }],
  ["boolean", { type: "boolean" }],
  ["null", { type: "null" }],
  ["type list", { type: ["null", "integer"], minimum: 1 }],
  ["enum", { enum: ["celsius", "fahrenheit"] }],
  ["const", { const: 42 }],
  ["array bounds", { type: "array", items: { type: "integer" }, minItems: 3, maxItems: 4 }],
  ["unique strings", { type: "array", items: { type: "string" }, minItems: 3, uniqueItems: true }],
  ["unique enum", { type: "array", items: { enum: ["a", "b", "c"] }, minItems: 2, uniqueItems: true }],
  ["tuple (prefixItems)", { type: "array", prefixItems: [{ type: "string" }, { type: "number" }], minItems: 2 }],
  ["nested, strict", {
    type: "object",
    properties: {
      location: { type: "string", description: "The city and state" },
      unit: { type: ["string", "null"], enum: ["celsius", "fahrenheit", null] },
      days: { type: "array", items: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] } }
    },
    required: ["location", "unit", "days"],
    additionalProperties: false
  }],
  ["$defs and $ref", {
    type: "object",
    $defs: { Point: { type: "object", properties: { x: { type: "number" } }, required: ["x"] } },
    properties: { a: { $ref: "#/$defs/Point" }, b: { $ref: "#/$defs/Point" } },
    required: ["a", "b"]
  }],
  ["anyOf / oneOf / allOf", {
    type: "object",
    properties: {
      u: { anyOf: [{ type: "null" }, { type: "string", minLength: 2 }] },
      o: { oneOf: [{ type: "integer", minimum: 100 }, { type: "boolean" }] },
      m: { allOf: [{ type: "object", properties: { p: { type: "string" } }, required: ["p"] }, { required: ["q"] }] }
    },
    required: ["u", "o", "m"]
  }],
  ["defaults and examples", {
    type: "object",
    properties: { d: { type: "integer", default: 7 }, e: { type: "string", examples: ["sample"] } },
    required: ["d", "e"]
  }],
  [
    "Effect schema",
    JSONSchema.make(Schema.Struct({
      name: Schema.NonEmptyString,
      age: Schema.Int.pipe(Schema.between(18, 99)),
      tags: Schema.Array(Schema.Literal("x", "y")),
      address: Address,
      previous: Schema.optional(Address),
      nick: Schema.NullOr(Schema.String),
      pair: Schema.Tuple(Schema.String, Schema.Number)
    }))
  ]
]

describe("JsonSchemaValue", () => {
  for (const [name, schema] of cases) {
    it(`generates a valid value: ${name}`, () => {
      assertValid(schema, valueFor(schema, { text: "What's the weather like in San Francisco? add 2 and 3" }))
      assertValid(schema, valueFor(schema))
    })
  }

  it("fills values from the prompt where they obviously fit", () => {
    const parameters = {
      type: "object",
      properties: {
        location: { type: "string" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        a: { type: "number" },
        b: { type: "number" }
      },
      required: ["location", "unit", "a", "b"]
    }
    assert.deepStrictEqual(argumentsFor(parameters, { text: "weather in Paris in fahrenheit, 2 and 3" }), {
      location: "Paris",
      unit: "fahrenheit",
      a: 2,
      b: 3
    })
    // An optional property is filled only when the prompt fills it.
    const optional = { type: "object", properties: { city: { type: "string" }, other: { type: "string" } } }
    assert.deepStrictEqual(argumentsFor(optional, { text: "weather for San Francisco, CA" }), {
      city: "San Francisco, CA"
    })
    assert.deepStrictEqual(argumentsFor(optional, { text: "nothing here" }), {})
    assert.deepStrictEqual(
      argumentsFor({ type: "object", properties: { query: { type: "string" } } }, { text: "cats" }),
      {
        query: "cats"
      }
    )
    // No schema: the prompt as `request`.
    assert.deepStrictEqual(argumentsFor(undefined, { text: "hi" }), { request: "hi" })
    assert.strictEqual(placeIn("What's the weather like in San Francisco?"), "San Francisco")
    assert.strictEqual(placeIn("no place here"), undefined)
  })

  it("is deterministic and never throws on odd schemas", () => {
    const odd = [
      { $ref: "#/nowhere" },
      { type: "string", pattern: "(" },
      { $ref: "#" },
      true,
      false,
      null,
      { type: "array", maxItems: 0 }
    ]
    for (const schema of odd) {
      assert.deepStrictEqual(valueFor(schema, { text: "x" }), valueFor(schema, { text: "x" }))
    }
    assertValid({ type: "array", maxItems: 0 }, valueFor({ type: "array", maxItems: 0 }))
  })
})
