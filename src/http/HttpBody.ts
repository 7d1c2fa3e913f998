/**
 * Request bodies and JSON responses without the per-request overhead of the platform's body getters
 * (which fork a fiber per request): read the bytes once, with a size limit, then decode.
 */
import type { HttpServerRequest } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { Data, Effect } from "effect"
import type { IncomingMessage } from "node:http"

export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly limit: number }> {}
export class BodyReadFailed extends Data.TaggedError("BodyReadFailed")<{ readonly message: string }> {}
export class InvalidJson extends Data.TaggedError("InvalidJson")<{ readonly message: string }> {}

const nodeSource = (request: HttpServerRequest.HttpServerRequest): IncomingMessage | undefined => {
  const source = (request as unknown as { readonly source?: unknown }).source
  return source !== null && typeof source === "object" && typeof (source as IncomingMessage).on === "function" &&
      typeof (source as IncomingMessage).headers === "object" ?
    source as IncomingMessage :
    undefined
}

/** The request body as text, failing with BodyTooLarge past `limit` bytes. */
export const readText = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<string, BodyTooLarge | BodyReadFailed> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > limit) return Effect.fail(new BodyTooLarge({ limit }))
  const source = nodeSource(request)
  if (source === undefined) {
    return Effect.flatMap(
      Effect.mapError(request.arrayBuffer, (e) => new BodyReadFailed({ message: String(e) })),
      (buffer) =>
        buffer.byteLength > limit ?
          Effect.fail(new BodyTooLarge({ limit })) :
          Effect.succeed(new TextDecoder().decode(buffer))
    )
  }
  if (source.readableEnded) return Effect.succeed("")
  return Effect.async<string, BodyTooLarge | BodyReadFailed>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        source.resume()
        resume(Effect.fail(new BodyTooLarge({ limit })))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8")))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(new BodyReadFailed({ message: error.message })))
    }
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  })
}

/** The request body parsed as JSON (any JSON value). */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<unknown, BodyTooLarge | BodyReadFailed | InvalidJson> =>
  Effect.flatMap(readText(request, limit), (text) =>
    Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) => new InvalidJson({ message: error instanceof Error ? error.message : String(error) })
    }))

const jsonHeaders = { "content-type": "application/json" } as const

/** A JSON response; the body is serialised here, once. */
export const json = (
  body: unknown,
  status = 200,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(JSON.stringify(body), {
    status,
    contentType: "application/json",
    headers: headers === undefined ? jsonHeaders : { ...jsonHeaders, ...headers }
  })

/** The host's plain error envelope: `{ "error": { "message", "type" } }`. */
export const errorJson = (
  status: number,
  type: string,
  message: string,
  extra?: Record<string, unknown>,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse => json({ error: { message, type, ...extra } }, status, headers)
