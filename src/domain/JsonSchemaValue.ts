/**
 * A value valid against a JSON schema, generated without a validator: what the offline default agent sends as
 * tool arguments and as structured output. Deterministic: the same schema and prompt give the same value.
 *
 * Covers what clients generate (OpenAI strict schemas, Effect's `JSONSchema.make`, zod-to-json-schema):
 * `type` (one or several), `const`, `enum`, `default`, `examples`, objects with `required` (and optional
 * properties the prompt obviously fills), arrays (`items`, `prefixItems`, tuple `items`, min/max/unique),
 * numbers with bounds and `multipleOf`, strings with lengths, common `format`s and simple `pattern`s,
 * `anyOf`/`oneOf`/`allOf`, and local `$ref`s (`#/$defs/...`, `#/definitions/...`). A schema it cannot satisfy
 * (an exotic pattern) still gets its best attempt: the value is never an exception.
 */

type Obj = Record<string, unknown>

/** What the prompt offers: its text (a place it names, the numbers it mentions, in order, an enum option). */
export interface Hints {
  readonly text: string
}

const MAX_DEPTH = 24

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v)

const words = (s: string): ReadonlyArray<string> => s.toLowerCase().match(/[a-z0-9]+/g) ?? []

// A place: "in Paris", "for San Francisco, CA", "at New York" — a capitalised phrase after a preposition.
const placePattern = /\b(?:in|for|at|near|of|to|from)\s+((?:[A-Z][\w'.-]*)(?:\s+[A-Z][\w'.-]*)*(?:,\s*[A-Z]{2}\b)?)/u

/** The place a prompt names ("weather in Paris" → "Paris"), if any. */
export const placeIn = (text: string): string | undefined => {
  const match = placePattern.exec(text)
  return match?.[1]
}

const placeWords = /\b(city|location|place|country|town|region|address|destination|where)\b/
const textWords = /\b(query|q|question|text|message|prompt|input|content|search|request|topic|term|keywords?)\b/

const propertyKind = (name: string, schema: Obj): "place" | "text" | undefined => {
  const label = `${name.replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2")} ${
    typeof schema.description === "string" ? schema.description : ""
  }`.toLowerCase()
  const head = name.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").toLowerCase()
  if (placeWords.test(head)) return "place"
  if (textWords.test(head)) return "text"
  if (placeWords.test(label)) return "place"
  return undefined
}

class Generator {
  private numbers: Array<number>

  constructor(private readonly root: unknown, private readonly hints: Hints) {
    this.numbers = (hints.text.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number)
  }

  resolve(schema: unknown, depth: number): Obj {
    let current = schema
    for (let i = 0; i < 8 && isObj(current) && typeof current.$ref === "string"; i++) {
      const target = this.lookup(current.$ref)
      if (target === undefined) return {}
      // Sibling keywords of a $ref (a description, a default) apply too.
      const { $ref: _ref, ...rest } = current
      current = Object.keys(rest).length === 0 ? target : { ...(isObj(target) ? target : {}), ...rest }
    }
    if (typeof current === "boolean") return current ? {} : { not: {} }
    return isObj(current) && depth < MAX_DEPTH ? current : {}
  }

  private lookup(ref: string): unknown {
    if (ref === "#") return this.root
    if (!ref.startsWith("#/")) return undefined
    let node: unknown = this.root
    for (const raw of ref.slice(2).split("/")) {
      const key = raw.replace(/~1/g, "/").replace(/~0/g, "~")
      if (!isObj(node)) return undefined
      node = node[key]
    }
    return node
  }

  value(raw: unknown, depth: number, name: string): unknown {
    const schema = this.resolve(raw, depth)
    if ("const" in schema) return schema.const
    if (Array.isArray(schema.enum) && schema.enum.length > 0) return this.pickEnum(schema.enum)
    if ("default" in schema && schema.default !== undefined) return schema.default
    if (Array.isArray(schema.examples) && schema.examples.length > 0) return schema.examples[0]
    if (Array.isArray(schema.allOf) && schema.allOf.length > 0) return this.allOf(schema, depth, name)
    for (const key of ["anyOf", "oneOf"] as const) {
      const branches = schema[key]
      if (Array.isArray(branches) && branches.length > 0) {
        // The first branch that is not just `null` (an optional value still gets a real one).
        const branch = branches.find((b) => this.resolve(b, depth + 1).type !== "null") ?? branches[0]
        const { [key]: _branches, ...rest } = schema
        const base = this.resolve(branch, depth + 1)
        return this.value({ ...rest, ...base }, depth + 1, name)
      }
    }
    return this.byType(schema, this.typeOf(schema), depth, name)
  }

  private typeOf(schema: Obj): string | undefined {
    const t = schema.type
    if (typeof t === "string") return t
    if (Array.isArray(t)) return (t.find((x) => x !== "null") ?? t[0]) as string | undefined
    if (isObj(schema.properties) || Array.isArray(schema.required)) return "object"
    if ("items" in schema || "prefixItems" in schema) return "array"
    if ("minLength" in schema || "maxLength" in schema || "pattern" in schema || "format" in schema) return "string"
    if ("minimum" in schema || "maximum" in schema || "multipleOf" in schema) return "number"
    return undefined
  }

  private pickEnum(values: ReadonlyArray<unknown>): unknown {
    // An option the prompt names ("in fahrenheit") wins; else the first.
    const said = this.hints.text.toLowerCase()
    for (const v of values) if (typeof v === "string" && v.length > 1 && said.includes(v.toLowerCase())) return v
    return values[0]
  }

  private allOf(schema: Obj, depth: number, name: string): unknown {
    const { allOf, ...rest } = schema
    const merged: Obj = { ...rest }
    const properties: Obj = isObj(rest.properties) ? { ...rest.properties } : {}
    const required = new Set<unknown>(Array.isArray(rest.required) ? rest.required : [])
    for (const part of allOf as ReadonlyArray<unknown>) {
      const p = this.resolve(part, depth + 1)
      for (const [k, v] of Object.entries(p)) {
        if (k === "properties" && isObj(v)) Object.assign(properties, v)
        else if (k === "required" && Array.isArray(v)) v.forEach((r) => required.add(r))
        else if (!(k in merged)) merged[k] = v
      }
    }
    if (Object.keys(properties).length > 0) merged.properties = properties
    if (required.size > 0) merged.required = [...required]
    return this.value(merged, depth + 1, name)
  }

  private byType(schema: Obj, type: string | undefined, depth: number, name: string): unknown {
    switch (type) {
      case "object":
        return this.object(schema, depth)
      case "array":
        return this.array(schema, depth, name)
      case "string":
        return this.string(schema, name)
      case "integer":
        return this.number(schema, true)
      case "number":
        return this.number(schema, false)
      case "boolean":
        return true
      case "null":
        return null
      default:
        return name === "" ? {} : "example"
    }
  }

  private object(schema: Obj, depth: number): Obj {
    const properties = isObj(schema.properties) ? schema.properties : {}
    const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r) => typeof r === "string") : [])
    const out: Obj = {}
    for (const [key, sub] of Object.entries(properties)) {
      if (required.has(key)) {
        out[key] = this.value(sub, depth + 1, key)
        continue
      }
      // An optional property only when the prompt obviously fills it (a place, the question itself).
      const resolved = this.resolve(sub, depth + 1)
      const kind = propertyKind(key, resolved)
      if (kind === "place" && placeIn(this.hints.text) !== undefined) out[key] = this.value(sub, depth + 1, key)
      else if (kind === "text" && this.hints.text.length > 0) out[key] = this.value(sub, depth + 1, key)
    }
    // A required name without a property schema: any value is valid.
    for (const key of required) if (!(key in out)) out[key] = "example"
    const min = typeof schema.minProperties === "number" ? schema.minProperties : 0
    for (const [key, sub] of Object.entries(properties)) {
      if (Object.keys(out).length >= min) break
      if (!(key in out)) out[key] = this.value(sub, depth + 1, key)
    }
    return out
  }

  private array(schema: Obj, depth: number, name: string): Array<unknown> {
    const prefix = Array.isArray(schema.prefixItems) ?
      schema.prefixItems :
      Array.isArray(schema.items) ?
      schema.items :
      undefined
    const min = typeof schema.minItems === "number" ? schema.minItems : 0
    const max = typeof schema.maxItems === "number" ? schema.maxItems : Number.POSITIVE_INFINITY
    if (prefix !== undefined) {
      const out = prefix.map((item) => this.value(item, depth + 1, name))
      const rest = Array.isArray(schema.items) ? schema.additionalItems : schema.items
      for (let i = out.length; i < min; i++) out.push(this.value(isObj(rest) ? rest : {}, depth + 1, name))
      return out
    }
    const count = Math.min(Math.max(min, 1), max)
    const items = schema.items ?? {}
    const out: Array<unknown> = []
    const seen = new Set<string>()
    for (let i = 0; i < count; i++) {
      let value = this.value(items, depth + 1, name)
      if (schema.uniqueItems === true) value = this.distinct(value, items, depth, seen)
      out.push(value)
    }
    return out
  }

  /** A value not yet in the array (for `uniqueItems`): another enum member, a suffixed string, a next number. */
  private distinct(value: unknown, items: unknown, depth: number, seen: Set<string>): unknown {
    let candidate = value
    const schema = this.resolve(items, depth + 1)
    const options = Array.isArray(schema.enum) ? schema.enum : []
    for (let i = 1; seen.has(JSON.stringify(candidate)) && i < 64; i++) {
      if (options.length > 0) candidate = options[i % options.length]
      else if (typeof value === "string") candidate = `${value}${i + 1}`
      else if (typeof value === "number") {
        candidate = value + i * (typeof schema.multipleOf === "number" ? schema.multipleOf : 1)
      } else break
    }
    seen.add(JSON.stringify(candidate))
    return candidate
  }

  private string(schema: Obj, name: string): string {
    const format = typeof schema.format === "string" ? schema.format : undefined
    const formatted = format === undefined ? undefined : formats[format]
    let value = formatted ?? this.fromPrompt(name, schema) ?? "example"
    const min = typeof schema.minLength === "number" ? schema.minLength : 0
    const max = typeof schema.maxLength === "number" ? schema.maxLength : Number.POSITIVE_INFINITY
    if (typeof schema.pattern === "string") value = this.matching(schema.pattern, value, min, max)
    if (value.length < min) value = value + "x".repeat(min - value.length)
    if (value.length > max) value = value.slice(0, max)
    return value
  }

  private fromPrompt(name: string, schema: Obj): string | undefined {
    const kind = propertyKind(name, schema)
    if (kind === "place") return placeIn(this.hints.text)
    if (kind === "text" && this.hints.text.length > 0) return this.hints.text
    return undefined
  }

  /** A string the pattern accepts: the value itself, a prompt word, or a few plain candidates. */
  private matching(pattern: string, value: string, min: number, max: number): string {
    let regex: RegExp
    try {
      regex = new RegExp(pattern, "u")
    } catch {
      return value
    }
    const fits = (s: string) => s.length >= min && s.length <= max && regex.test(s)
    if (fits(value)) return value
    const built = fromPattern(pattern, min)
    const candidates = [
      ...(built === undefined ? [] : [built]),
      ...words(this.hints.text),
      "a",
      "abc",
      "example",
      "A",
      "0",
      "1",
      "123",
      "a1",
      "abc123",
      "ABC",
      "x".repeat(Math.max(min, 1))
    ]
    return candidates.find(fits) ?? value
  }

  private number(schema: Obj, integer: boolean): number {
    const min = typeof schema.minimum === "number" ? schema.minimum : Number.NEGATIVE_INFINITY
    const max = typeof schema.maximum === "number" ? schema.maximum : Number.POSITIVE_INFINITY
    const exMin = typeof schema.exclusiveMinimum === "number" ? schema.exclusiveMinimum : undefined
    const exMax = typeof schema.exclusiveMaximum === "number" ? schema.exclusiveMaximum : undefined
    const step = typeof schema.multipleOf === "number" && schema.multipleOf > 0 ? schema.multipleOf : undefined
    const ok = (n: number) =>
      Number.isFinite(n) && n >= min && n <= max && (exMin === undefined || n > exMin) &&
      (exMax === undefined || n < exMax) && (!integer || Number.isInteger(n)) &&
      (step === undefined || Math.abs(n / step - Math.round(n / step)) < 1e-9)
    // The prompt's numbers in order ("add 2 and 3"), each used once, when they fit.
    const index = this.numbers.findIndex(ok)
    if (index !== -1) return this.numbers.splice(index, 1)[0]!
    const low = exMin !== undefined ? Math.max(min, exMin) : min
    let start = Number.isFinite(low) ? low : Math.min(0, Number.isFinite(max) ? max : 0)
    if (exMin !== undefined && start <= exMin) {
      start = exMin + (integer ? 1 : Number.EPSILON * Math.max(1, Math.abs(exMin)) * 4)
    }
    const unit = step ?? (integer ? 1 : undefined)
    if (unit !== undefined) start = Math.ceil(start / unit - 1e-9) * unit
    else if (integer) start = Math.ceil(start)
    for (let i = 0, n = start; i < 8; i++, n += unit ?? 1) if (ok(n)) return n
    return start
  }
}

/**
 * A string a simple regular expression matches: literals, escapes (`\\d`, `\\w`, `\\s`, escaped punctuation),
 * classes with ranges, groups with alternatives (the first is taken) and quantifiers (the least count, at least
 * enough for `min` length when unbounded). Undefined for what it does not know (lookarounds, backreferences).
 */
const fromPattern = (pattern: string, min: number): string | undefined => {
  let i = 0
  const fail = (): never => {
    throw new PatternUnsupported()
  }
  const atom = (): string => {
    const c = pattern[i++]
    switch (c) {
      case "\\": {
        const e = pattern[i++] ?? fail()
        if (e === "d") return "0"
        if (e === "w") return "a"
        if (e === "s") return " "
        if (/[a-zA-Z0-9]/.test(e)) return fail()
        return e
      }
      case "[": {
        const negated = pattern[i] === "^"
        if (negated) i++
        let first: string | undefined
        while (i < pattern.length && pattern[i] !== "]") {
          let ch = pattern[i++]!
          if (ch === "\\") {
            const e = pattern[i++] ?? fail()
            ch = e === "d" ? "0" : e === "w" ? "a" : e === "s" ? " " : e
          }
          if (pattern[i] === "-" && pattern[i + 1] !== "]" && i + 1 < pattern.length) i += 2
          first ??= ch
        }
        if (pattern[i++] !== "]") fail()
        if (negated) return first === "a" || first === "A" ? "0" : "a"
        return first ?? fail()
      }
      case "(": {
        if (pattern[i] === "?") {
          if (pattern[i + 1] !== ":") fail()
          i += 2
        }
        const inner = alternatives()
        if (pattern[i++] !== ")") fail()
        return inner
      }
      case ".":
        return "a"
      case undefined:
      case "*":
      case "+":
      case "?":
      case "{":
      case ")":
      case "|":
        return fail()
      default:
        return c
    }
  }
  const quantified = (piece: string): string => {
    const q = pattern[i]
    let least = 1
    let unbounded = false
    if (q === "*" || q === "?") {
      least = 0
      unbounded = q === "*"
      i++
    } else if (q === "+") {
      unbounded = true
      i++
    } else if (q === "{") {
      const close = pattern.indexOf("}", i)
      const m = /^\{(\d+)(,(\d*))?\}$/.exec(pattern.slice(i, close + 1))
      if (m === null) fail()
      least = Number(m![1])
      unbounded = m![2] !== undefined && m![3] === ""
      i = close + 1
    } else {
      return piece
    }
    if (pattern[i] === "?") i++
    return piece.repeat(unbounded ? Math.max(least, least === 0 ? 0 : 1) : least)
  }
  const sequence = (): string => {
    let out = ""
    while (i < pattern.length && pattern[i] !== "|" && pattern[i] !== ")") {
      if (pattern[i] === "^" || pattern[i] === "$") {
        i++
        continue
      }
      out += quantified(atom())
    }
    return out
  }
  const alternatives = (): string => {
    const first = sequence()
    while (pattern[i] === "|") {
      i++
      sequence()
    }
    return first
  }
  try {
    const out = alternatives()
    if (i !== pattern.length) return undefined
    // Too short for minLength: repeat the last character when the pattern is open-ended.
    return out.length >= min || pattern.endsWith("$") ? out : out + (out.at(-1) ?? "a").repeat(min - out.length)
  } catch (error) {
    if (error instanceof PatternUnsupported) return undefined
    throw error
  }
}

class PatternUnsupported extends Error {}

const formats: Record<string, string> = {
  "date-time": "2026-01-01T00:00:00Z",
  date: "2026-01-01",
  time: "00:00:00Z",
  duration: "PT1M",
  email: "user@example.com",
  "idn-email": "user@example.com",
  hostname: "example.com",
  "idn-hostname": "example.com",
  ipv4: "192.0.2.1",
  ipv6: "2001:db8::1",
  uri: "https://example.com/",
  "uri-reference": "https://example.com/",
  iri: "https://example.com/",
  url: "https://example.com/",
  uuid: "00000000-0000-4000-8000-000000000000",
  regex: ".*"
}

/** A value `schema` accepts, filled from `hints` where a value obviously fits. */
export const valueFor = (schema: unknown, hints: Hints = { text: "" }): unknown =>
  new Generator(schema, hints).value(schema, 0, "")

/**
 * Tool arguments for a tool's `parameters` schema: always a JSON object (a schema-less tool gets
 * `{ "request": <prompt> }`).
 */
export const argumentsFor = (parameters: unknown, hints: Hints): Obj => {
  if (!isObj(parameters) || Object.keys(parameters).length === 0) return { request: hints.text }
  const value = valueFor(parameters, hints)
  return isObj(value) ? value : {}
}

/** The words of a text, lower-case (for matching prompts to tools). */
export const wordsOf = words
