/**
 * Request bodies and JSON responses without the per-request overhead of the platform's body getters
 * (which fork a fiber per request): read the bytes once, with a size limit, then decode. Text must be valid
 * UTF-8; JSON is scanned for its nesting depth, its largest array/object and lone surrogate escapes before it
 * is parsed, so a hostile body is a 4xx, never a stack overflow or a 500 further in.
 */
import { HttpServerResponse } from "@effect/platform"
import { Data, Effect } from "effect"
import type { IncomingRequest } from "./IncomingRequest.js"

export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limit: number }> {}
export class BodyReadFailed extends Data.TaggedError("BodyReadFailed")<{ readonly message: string }> {}
export class InvalidJson extends Data.TaggedError("InvalidJson")<{ readonly message: string }> {}
/** The bytes are not UTF-8, or a JSON string escapes half a surrogate pair (no character can be encoded). */
export class InvalidEncoding extends Data.TaggedError("InvalidEncoding")<{ readonly message: string }> {}
/** The JSON nests deeper, or holds more items in one array/object, than the host accepts. */
export class JsonTooComplex extends Data.TaggedError("JsonTooComplex")<{ readonly message: string }> {}

export type BodyError = BodyTooLarge | BodyReadFailed | InvalidJson | InvalidEncoding | JsonTooComplex

/** What a JSON body may be: its size, its nesting depth and the items in any one array or object. */
export interface JsonLimits {
  /** Largest body, in bytes (413 above). */
  readonly maxBodyBytes: number
  /** Deepest nesting of arrays and objects (default 64). */
  readonly maxJsonDepth?: number
  /** Most items in one array or members in one object (default 1,000), e.g. Responses `input` items. */
  readonly maxJsonItems?: number
}

export const defaultMaxJsonDepth = 64
export const defaultMaxJsonItems = 1_000

/** The HTTP status, error type and message a body error is answered with (each channel wraps its envelope). */
export const describeBodyError = (
  error: BodyError
): { readonly status: number; readonly type: string; readonly message: string } => {
  switch (error._tag) {
    case "BodyTooLarge":
      return { status: 413, type: "request_too_large", message: `the request body exceeds ${error.limit} bytes` }
    case "BodyReadFailed":
      return { status: 400, type: "invalid_request", message: `the request body could not be read: ${error.message}` }
    case "InvalidJson":
      return { status: 400, type: "invalid_json", message: `the request body is not valid JSON: ${error.message}` }
    case "InvalidEncoding":
      return { status: 400, type: "invalid_encoding", message: error.message }
    case "JsonTooComplex":
      return { status: 400, type: "json_too_complex", message: error.message }
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const decodeUtf8 = (bytes: Uint8Array): Effect.Effect<string, InvalidEncoding> => {
  try {
    return Effect.succeed(utf8.decode(bytes))
  } catch {
    return Effect.fail(new InvalidEncoding({ message: "the request body is not valid UTF-8" }))
  }
}

const hexAt = (text: string, at: number): number =>
  /^[0-9a-fA-F]{4}$/.test(text.slice(at, at + 4)) ? parseInt(text.slice(at, at + 4), 16) : -1

/**
 * Why `text` is not acceptable JSON for the limits, before it is parsed: too deep, too many items in one array
 * or object, or a `\uD800`-style escape of half a surrogate pair. Undefined when the shape is fine (whether it
 * parses is JSON.parse's business). One pass over the characters, no allocation per value.
 */
export const jsonShapeProblem = (
  text: string,
  maxDepth: number,
  maxItems: number
): InvalidEncoding | JsonTooComplex | undefined => {
  const separators: Array<number> = []
  const n = text.length
  let i = 0
  while (i < n) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      i++
      while (i < n) {
        const s = text.charCodeAt(i)
        if (s === 0x22) break
        if (s !== 0x5c) {
          i++
          continue
        }
        if (text.charCodeAt(i + 1) !== 0x75) {
          i += 2
          continue
        }
        const code = hexAt(text, i + 2)
        if (code >= 0xd800 && code <= 0xdbff) {
          const low = text.charCodeAt(i + 6) === 0x5c && text.charCodeAt(i + 7) === 0x75 ? hexAt(text, i + 8) : -1
          if (low < 0xdc00 || low > 0xdfff) return loneSurrogate(code)
          i += 12
          continue
        }
        if (code >= 0xdc00 && code <= 0xdfff) return loneSurrogate(code)
        i += 6
      }
      i++
      continue
    }
    if (c === 0x5b || c === 0x7b) {
      if (separators.length >= maxDepth) {
        return new JsonTooComplex({
          message: `the request body nests arrays and objects deeper than ${maxDepth} levels`
        })
      }
      separators.push(0)
    } else if (c === 0x5d || c === 0x7d) {
      separators.pop()
    } else if (c === 0x2c && separators.length > 0) {
      const top = separators.length - 1
      const count = separators[top]! + 1
      if (count >= maxItems) {
        return new JsonTooComplex({
          message: `an array or object in the request body has more than ${maxItems} items`
        })
      }
      separators[top] = count
    }
    i++
  }
  return undefined
}

const loneSurrogate = (code: number) =>
  new InvalidEncoding({
    message: `the request body escapes half a surrogate pair (\\u${code.toString(16)}): it is not valid Unicode`
  })

/**
 * Reads the body, failing with BodyTooLarge past `limit` bytes (a declared content-length over the limit fails
 * before anything is read), and hands the bytes to `finish` (no extra step per request on the hot path).
 */
const readBody = <A, E>(
  request: IncomingRequest,
  limit: number,
  empty: A,
  finish: (bytes: Uint8Array) => Effect.Effect<A, E>
): Effect.Effect<A, E | BodyTooLarge | BodyReadFailed> =>
  readBodyWith(request, limit, () => Effect.succeed(empty), finish, identity)

const identity = <A>(a: A): A => a

/**
 * `readBody` with the empty body handed to `onEmpty` and the read's own failures mapped by `problem`. The listeners
 * are removed on interruption only when the caller can be interrupted: a route handler runs uninterruptibly, and
 * registering the canceler costs the fiber an interruptible region (four steps) per request.
 */
const readBodyWith = <A, E, P>(
  request: IncomingRequest,
  limit: number,
  onEmpty: () => Effect.Effect<A, E>,
  finish: (bytes: Uint8Array) => Effect.Effect<A, E>,
  problem: (error: BodyTooLarge | BodyReadFailed) => P
): Effect.Effect<A, E | P> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return Effect.fail(problem(new BodyTooLarge({ limit })))
  const source = request.source
  if (source.readableEnded) return onEmpty()
  const register = (cancellable: boolean) => (resume: (effect: Effect.Effect<A, E | P>) => void) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        source.resume()
        resume(Effect.fail(problem(new BodyTooLarge({ limit }))))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(problem(new BodyReadFailed({ message: error.message }))))
    }
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return cancellable ? Effect.sync(cleanup) : undefined
  }
  return Effect.checkInterruptible((interruptible) => Effect.async(register(interruptible)))
}

/** The request body's exact bytes (for signed webhooks), failing with BodyTooLarge past `limit` bytes. */
export const readBytes = (
  request: IncomingRequest,
  limit: number
): Effect.Effect<Uint8Array, BodyTooLarge | BodyReadFailed> =>
  readBody(request, limit, new Uint8Array(0), Effect.succeed)

/** The request body as UTF-8 text, failing with BodyTooLarge past `limit` bytes, InvalidEncoding when not UTF-8. */
export const readText = (
  request: IncomingRequest,
  limit: number
): Effect.Effect<string, BodyTooLarge | BodyReadFailed | InvalidEncoding> => readBody(request, limit, "", decodeUtf8)

/**
 * `bytes` (a body already read, e.g. to check its signature) parsed as JSON within `limits`: UTF-8, then the
 * same shape checks as `readJson`.
 */
export const parseJsonBytes = (
  bytes: Uint8Array,
  limits: number | JsonLimits
): Effect.Effect<unknown, InvalidEncoding | InvalidJson | JsonTooComplex> => {
  const parsed = parseJsonSync(bytes, limits)
  return "error" in parsed ? Effect.fail(parsed.error) : Effect.succeed(parsed.value)
}

/** `bytes` as JSON within `limits`, synchronously: the value, or why it is not acceptable. */
const parseJsonSync = (
  bytes: Uint8Array,
  limits: number | JsonLimits
): { readonly value: unknown } | { readonly error: InvalidEncoding | InvalidJson | JsonTooComplex } => {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return { error: new InvalidEncoding({ message: "the request body is not valid UTF-8" }) }
  }
  const { maxJsonDepth = defaultMaxJsonDepth, maxJsonItems = defaultMaxJsonItems } = typeof limits === "number" ?
    {} :
    limits
  const problem = jsonShapeProblem(text, maxJsonDepth, maxJsonItems)
  if (problem !== undefined) return { error: problem }
  try {
    return { value: JSON.parse(text) as unknown }
  } catch (error) {
    return { error: new InvalidJson({ message: error instanceof Error ? error.message : String(error) }) }
  }
}

const noBytes = new Uint8Array(0)

/**
 * The request body parsed as JSON (any JSON value), within `limits` (a byte limit alone keeps the default depth
 * and item limits; channels pass `ctx.settings`).
 */
export const readJson = (
  request: IncomingRequest,
  limits: number | JsonLimits
): Effect.Effect<unknown, BodyError> => readJsonWith(request, limits, Effect.succeed, identity)

/**
 * The body parsed as JSON, handed to `use` (its result is the read's), every failure mapped by `problem`: one
 * Effect step for the parse, not one per stage (read, decode, parse, check).
 */
export const readJsonWith = <A, E, P>(
  request: IncomingRequest,
  limits: number | JsonLimits,
  use: (value: unknown) => Effect.Effect<A, E>,
  problem: (error: BodyError) => P
): Effect.Effect<A, E | P> => {
  const finish = (bytes: Uint8Array): Effect.Effect<A, E | P> => {
    const parsed = parseJsonSync(bytes, limits)
    return "error" in parsed ? Effect.fail(problem(parsed.error)) : use(parsed.value)
  }
  return readBodyWith(
    request,
    typeof limits === "number" ? limits : limits.maxBodyBytes,
    () => finish(noBytes),
    finish,
    problem
  )
}

/**
 * A JSON response of text already serialised (e.g. also stored as it is). The body stays a string (a `Raw` body
 * with its byte length): the listener hands it to `end` with the headers, which Node sends as one write, where a
 * `Uint8Array` body costs a UTF-8 copy and a two-buffer `writev`.
 */
export const jsonText = (
  text: string,
  status = 200,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.raw(text, {
    status,
    contentType: "application/json",
    contentLength: Buffer.byteLength(text, "utf8"),
    ...(headers === undefined ? {} : { headers })
  })

/** A JSON response; the body is serialised here, once. */
export const json = (
  body: unknown,
  status = 200,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse => jsonText(JSON.stringify(body), status, headers)

/**
 * Headers of a 503 answered because the host is shutting down: retry after a few seconds (on the restarted
 * process), and do not reuse this connection.
 */
export const shuttingDownHeaders: Readonly<Record<string, string>> = { "retry-after": "5", connection: "close" }

/** The host's plain error envelope: `{ "error": { "message", "type" } }`. */
export const errorJson = (
  status: number,
  type: string,
  message: string,
  extra?: Record<string, unknown>,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse => json({ error: { message, type, ...extra } }, status, headers)
