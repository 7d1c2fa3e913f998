/**
 * A small Bot API client over `HttpClient`: `POST {apiBase}/bot<token>/<method>` with a JSON body (or multipart
 * for uploads), answering `{ ok: true, result }` or `{ ok: false, error_code, description, parameters }`.
 * Failures are typed (`TelegramApiError` for what Telegram said, `TelegramTransportError` for everything between)
 * and the token is redacted from every message. The URL carries the token, so the HttpClient's own span (which
 * records `url.full`) is turned off; each call gets a span of its own naming only the method.
 *
 * At most `maxInFlight` requests are in flight at once (the others wait their turn, `Limiter`): the HTTP client opens a
 * connection per concurrent request, so without a bound a burst of updates from many chats opens one per chat
 * and the host spends its time connecting (on loopback the listener's backlog overflowed and connects timed out).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { Duration } from "effect"
import { Chunk, Effect, Redacted, Schedule, Schema, Stream } from "effect"
import { describeTransportError } from "../../http/ClientErrors.js"
import * as Limiter from "../shared/Limiter.js"

/** Telegram answered `ok: false` (or an HTTP error status). */
export class TelegramApiError extends Schema.TaggedError<TelegramApiError>()("TelegramApiError", {
  method: Schema.String,
  errorCode: Schema.Number,
  description: Schema.String,
  /** `parameters.retry_after`, in seconds (429). */
  retryAfterSeconds: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** The request did not get a Bot API answer: network failure, timeout, or a body that is not the Bot API's. */
export class TelegramTransportError extends Schema.TaggedError<TelegramTransportError>()("TelegramTransportError", {
  method: Schema.String,
  message: Schema.String
}) {}

/** A file is larger than the channel accepts. */
export class TelegramFileTooLarge extends Schema.TaggedError<TelegramFileTooLarge>()("TelegramFileTooLarge", {
  limit: Schema.Number,
  message: Schema.String
}) {}

export type BotApiError = TelegramApiError | TelegramTransportError

/** Worth trying again: rate limits, server errors and transport failures. 400/401/403/404 are final. */
export const isRetryable = (error: BotApiError): boolean =>
  error._tag === "TelegramTransportError" || error.errorCode === 429 || error.errorCode >= 500

/** The wait Telegram asked for, in milliseconds. */
export const retryAfterMillis = (error: BotApiError): number | undefined =>
  error._tag === "TelegramApiError" && error.retryAfterSeconds !== undefined ?
    error.retryAfterSeconds * 1000 :
    undefined

/** 400 "can't parse entities": the text is not valid for the parse mode. */
export const isParseEntitiesError = (error: BotApiError): boolean =>
  error._tag === "TelegramApiError" && error.errorCode === 400 && /can't parse entities/i.test(error.description)

/** 400 "message is not modified": an edit that changes nothing, harmless. */
export const isNotModified = (error: BotApiError): boolean =>
  error._tag === "TelegramApiError" && error.errorCode === 400 && /message is not modified/i.test(error.description)

/** 409 Conflict: another getUpdates consumer (or a webhook) owns this bot's updates. */
export const isConflict = (error: BotApiError): boolean => error._tag === "TelegramApiError" && error.errorCode === 409

export interface Options {
  readonly token: Redacted.Redacted<string>
  /** Default https://api.telegram.org. */
  readonly apiBase?: string
  /** Per-request timeout unless a call sets its own (default 30 s). */
  readonly timeout?: Duration.DurationInput
  /** Requests in flight at once (default `defaultMaxInFlight`); a held getUpdates long poll counts as one. */
  readonly maxInFlight?: number
}

export const defaultMaxInFlight = 32

export interface CallOptions {
  readonly timeout?: Duration.DurationInput
}

export interface BotApi {
  /** The bot's numeric id: the part of the token before the colon. */
  readonly botId: string
  readonly call: <A, I>(
    method: string,
    params: Record<string, unknown>,
    result: Schema.Schema<A, I>,
    options?: CallOptions
  ) => Effect.Effect<A, BotApiError>
  /** A multipart call (file uploads). */
  readonly callMultipart: (method: string, form: FormData) => Effect.Effect<unknown, BotApiError>
  /** Downloads `file_path` (from getFile), failing past `maxBytes`. */
  readonly download: (
    filePath: string,
    maxBytes: number
  ) => Effect.Effect<Uint8Array, BotApiError | TelegramFileTooLarge>
  /** Removes the token from a string (for logs and errors). */
  readonly redact: (text: string) => string
}

const ApiReply = Schema.Struct({
  ok: Schema.Boolean,
  result: Schema.optional(Schema.Unknown),
  error_code: Schema.optional(Schema.Number),
  description: Schema.optional(Schema.String),
  parameters: Schema.optional(Schema.Struct({ retry_after: Schema.optional(Schema.Number) }))
})
const decodeReply = Schema.decodeUnknownEither(ApiReply)

const parseJson = (body: string): unknown => {
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}

/** Builds a client for one bot on the given `HttpClient` (production: `http/UndiciClient.layer`). */
export const make = (options: Options): Effect.Effect<BotApi, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const httpClient = yield* HttpClient.HttpClient
    const inFlight = yield* Limiter.make(options.maxInFlight ?? defaultMaxInFlight)
    const token = Redacted.value(options.token)
    const apiBase = (options.apiBase ?? "https://api.telegram.org").replace(/\/+$/, "")
    const defaultTimeout = options.timeout ?? "30 seconds"
    const botId = token.split(":")[0] ?? ""
    const redact = (text: string) => token.length === 0 ? text : text.split(token).join("<token>")
    const client = httpClient.pipe(HttpClient.withTracerDisabledWhen(() => true))

    const transport = (method: string, error: unknown) =>
      new TelegramTransportError({
        method,
        message: redact(`Telegram ${method} failed: ${describeTransportError(error)}`)
      })

    const span = (method: string) =>
      Effect.withSpan(`Telegram.BotApi.${method === "download" ? "download" : "call"}`, {
        kind: "client",
        captureStackTrace: false,
        attributes: { "telegram.method": method }
      })

    /** Sends a request and reads its body as text, both under the timeout. */
    const exchange = (method: string, request: HttpClientRequest.HttpClientRequest, timeout: Duration.DurationInput) =>
      client.execute(request).pipe(
        Effect.flatMap((response) => Effect.map(response.text, (body) => ({ status: response.status, body }))),
        Effect.mapError((error) => transport(method, error)),
        Effect.timeoutFail({ duration: timeout, onTimeout: () => transport(method, "timed out") }),
        inFlight.withPermit
      )

    const send = (method: string, request: HttpClientRequest.HttpClientRequest, timeout: Duration.DurationInput) =>
      exchange(method, request, timeout).pipe(
        Effect.flatMap(({ body, status }): Effect.Effect<unknown, BotApiError> => {
          const reply = decodeReply(parseJson(body))
          if (reply._tag === "Left") {
            if (status >= 400) {
              return Effect.fail(
                new TelegramApiError({
                  method,
                  errorCode: status,
                  description: `HTTP ${status}`,
                  message: `Telegram ${method} failed: HTTP ${status}`
                })
              )
            }
            return Effect.fail(transport(method, `unexpected response (HTTP ${status})`))
          }
          const r = reply.right
          if (r.ok) return Effect.succeed(r.result)
          const description = redact(r.description ?? `HTTP ${status}`)
          const retryAfter = r.parameters?.retry_after
          return Effect.fail(
            new TelegramApiError({
              method,
              errorCode: r.error_code ?? status,
              description,
              ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter }),
              message: `Telegram ${method} failed: ${r.error_code ?? status} ${description}`
            })
          )
        })
      )

    const methodUrl = (method: string) => `${apiBase}/bot${token}/${method}`

    const call = <A, I>(
      method: string,
      params: Record<string, unknown>,
      result: Schema.Schema<A, I>,
      callOptions?: CallOptions
    ): Effect.Effect<A, BotApiError> =>
      send(
        method,
        HttpClientRequest.post(methodUrl(method)).pipe(HttpClientRequest.bodyUnsafeJson(params)),
        callOptions?.timeout ?? defaultTimeout
      ).pipe(
        Effect.flatMap((raw) =>
          Effect.mapError(
            Schema.decodeUnknown(result)(raw),
            () => transport(method, "the result has an unexpected shape")
          )
        ),
        span(method)
      )

    const callMultipart = (method: string, form: FormData) =>
      send(method, HttpClientRequest.post(methodUrl(method)).pipe(HttpClientRequest.bodyFormData(form)), defaultTimeout)
        .pipe(span(method))

    const tooLarge = (maxBytes: number) =>
      new TelegramFileTooLarge({ limit: maxBytes, message: `the file is larger than ${maxBytes} bytes` })

    // The body is read as a stream and abandoned past `maxBytes`, so a lying or missing content-length cannot
    // make the channel buffer more than the limit.
    const download = (filePath: string, maxBytes: number) =>
      client.get(`${apiBase}/file/bot${token}/${filePath}`).pipe(
        Effect.mapError((error) => transport("download", error)),
        Effect.flatMap((response): Effect.Effect<Uint8Array, BotApiError | TelegramFileTooLarge> => {
          if (response.status < 200 || response.status >= 300) {
            return Effect.fail(
              new TelegramApiError({
                method: "download",
                errorCode: response.status,
                description: `HTTP ${response.status}`,
                message: `Telegram file download failed: HTTP ${response.status}`
              })
            )
          }
          const declared = Number(response.headers["content-length"])
          if (Number.isFinite(declared) && declared > maxBytes) return Effect.fail(tooLarge(maxBytes))
          return response.stream.pipe(
            Stream.mapError((error) => transport("download", error)),
            Stream.mapAccumEffect(
              0,
              (total, chunk): Effect.Effect<readonly [number, Uint8Array], TelegramFileTooLarge> => {
                const next = total + chunk.byteLength
                return next > maxBytes ? Effect.fail(tooLarge(maxBytes)) : Effect.succeed([next, chunk] as const)
              }
            ),
            Stream.runCollect,
            Effect.map((chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)))
          )
        }),
        Effect.timeoutFail({ duration: defaultTimeout, onTimeout: () => transport("download", "timed out") }),
        inFlight.withPermit,
        span("download")
      )

    return { botId, call, callMultipart, download, redact } satisfies BotApi
  })

/**
 * Retries what is worth retrying, a few times: 429 waits what Telegram asked for (capped at a minute), other
 * retryable failures back off exponentially from half a second.
 */
export const withRetry = <A, E extends { readonly _tag: string }>(
  effect: Effect.Effect<A, E>,
  attempts = 3
): Effect.Effect<A, E> =>
  effect.pipe(
    Effect.retry({
      schedule: Schedule.identity<E>().pipe(
        Schedule.addDelay((error) => {
          const e = error as unknown as BotApiError
          const wait = e._tag === "TelegramApiError" || e._tag === "TelegramTransportError" ?
            retryAfterMillis(e) :
            undefined
          return wait === undefined ? 0 : Math.min(wait, 60_000)
        }),
        Schedule.intersect(Schedule.exponential("500 millis", 2)),
        Schedule.intersect(Schedule.recurs(attempts - 1))
      ),
      while: (error) => {
        const e = error as unknown as BotApiError
        return (e._tag === "TelegramApiError" || e._tag === "TelegramTransportError") && isRetryable(e)
      }
    })
  )
