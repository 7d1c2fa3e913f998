/**
 * A small Discord REST client over `HttpClient` (`{apiBase}/...`, JSON in and out) that honours Discord's rate
 * limits: each route's `X-RateLimit-Remaining`/`-Reset-After` paces the next request on it, a 429 waits its
 * `retry_after` (seconds, a float) and tries again while the caller's wait budget lasts, and a `global` 429 holds
 * every route. Failures are typed: `DiscordApiError` for what Discord answered, `DiscordTransportError` for
 * everything between. URLs carry interaction tokens, so the HttpClient's span (which records the URL) is off and
 * messages name the route with its tokens replaced.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Clock, Duration, Effect, Option, Redacted, Ref, Schema } from "effect"
import { describeTransportError } from "../../http/ClientErrors.js"

/** Discord answered with an error status. */
export class DiscordApiError extends Schema.TaggedError<DiscordApiError>()("DiscordApiError", {
  route: Schema.String,
  status: Schema.Number,
  /** Discord's JSON error code (50027 invalid webhook token, 10003 unknown channel, ...). */
  code: Schema.optional(Schema.Number),
  /** For 429: how long Discord asked to wait, in milliseconds. */
  retryAfterMillis: Schema.optional(Schema.Number),
  global: Schema.optional(Schema.Boolean),
  message: Schema.String
}) {}

/** No Discord answer: network failure, timeout, or a body that is not Discord's. */
export class DiscordTransportError extends Schema.TaggedError<DiscordTransportError>()("DiscordTransportError", {
  route: Schema.String,
  message: Schema.String
}) {}

export type ApiError = DiscordApiError | DiscordTransportError

/** Worth trying again later: rate limits, server errors, transport failures. Other 4xx are final. */
export const isRetryable = (error: ApiError): boolean =>
  error._tag === "DiscordTransportError" || error.status === 429 || error.status >= 500

/**
 * The interaction token is no longer accepted (expired after 15 minutes, or unknown): 401, or 404 with Unknown
 * Webhook (10015), Unknown Message (10008) or Invalid Webhook Token (50027).
 */
export const isTokenInvalid = (error: ApiError): boolean =>
  error._tag === "DiscordApiError" &&
  (error.status === 401 || error.code === 50027 || error.code === 10015 || error.code === 10008)

export interface Options {
  /** Default https://discord.com/api/v10. */
  readonly apiBase?: string
  /** The bot token, for routes that need `Authorization: Bot ...`. */
  readonly botToken?: Redacted.Redacted<string> | undefined
  /** Per-request timeout (default 15 s). */
  readonly timeout?: Duration.DurationInput
  /** Most routes whose rate-limit state is remembered (default 1,000; the oldest are forgotten first). */
  readonly maxRoutes?: number
}

export interface RequestOptions {
  readonly body?: unknown
  /** Send the bot token (channel messages, DMs, commands); interaction webhooks need none. */
  readonly auth?: boolean
  /** The longest this call may wait for rate limits before failing with the 429 (default 10 s). */
  readonly maxWait?: Duration.DurationInput
}

export interface Api {
  readonly hasBotToken: boolean
  /** `method path` (path below the API base, e.g. `/channels/1/messages`); the decoded JSON answer. */
  readonly request: (
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    options?: RequestOptions
  ) => Effect.Effect<unknown, ApiError>
}

/**
 * The route a path's rate limit belongs to: major parameters (channel, guild, webhook id) kept, the webhook
 * token and other ids replaced, so a message names no token.
 */
export const routeOf = (method: string, path: string): string => {
  const parts = path.split("?")[0]!.split("/")
  const out: Array<string> = []
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!
    const previous = parts[i - 1]
    if (previous === "webhooks" && i + 1 < parts.length) {
      out.push(part, ":token")
      i++
    } else if (previous === "channels" || previous === "guilds") out.push(part)
    else if (/^\d{5,}$/.test(part) && previous !== "applications") out.push(":id")
    else out.push(part)
  }
  return `${method} ${out.join("/")}`
}

interface Bucket {
  remaining: number
  resetAt: number
}

const ErrorBody = Schema.Struct({
  message: Schema.optional(Schema.String),
  code: Schema.optional(Schema.Number),
  retry_after: Schema.optional(Schema.Number),
  global: Schema.optional(Schema.Boolean)
})
const decodeErrorBody = Schema.decodeUnknownOption(ErrorBody)

const parseJson = (text: string): unknown => {
  if (text.length === 0) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const header = (headers: Readonly<Record<string, string | undefined>>, name: string): number | undefined => {
  const value = headers[name]
  if (value === undefined) return undefined
  const n = Number(value)
  return Number.isFinite(n) ? n : undefined
}

// Discord asks bots to identify themselves this way.
const userAgent = "DiscordBot (https://github.com/effect-agent-host, 0.1)"

/** Builds a client on the given `HttpClient` (production: `http/UndiciClient.layer`). */
export const make = (options: Options): Effect.Effect<Api, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const httpClient = yield* HttpClient.HttpClient
    const client = httpClient.pipe(HttpClient.withTracerDisabledWhen(() => true))
    const apiBase = (options.apiBase ?? "https://discord.com/api/v10").replace(/\/+$/, "")
    const timeout = options.timeout ?? "15 seconds"
    const maxRoutes = options.maxRoutes ?? 1_000
    const botToken = options.botToken === undefined ? undefined : Redacted.value(options.botToken)
    const buckets = new Map<string, Bucket>()
    const globalUntil = yield* Ref.make(0)

    const remember = (route: string, bucket: Bucket, now: number) => {
      buckets.delete(route)
      buckets.set(route, bucket)
      if (buckets.size <= maxRoutes) return
      for (const [key, value] of buckets) if (value.resetAt <= now) buckets.delete(key)
      while (buckets.size > maxRoutes) buckets.delete(buckets.keys().next().value!)
    }

    /** How long until `route` may be called: the global hold, or its bucket's reset when it is used up. */
    const waitFor = (route: string, now: number) =>
      Effect.map(Ref.get(globalUntil), (until) => {
        const bucket = buckets.get(route)
        const local = bucket !== undefined && bucket.remaining <= 0 ? bucket.resetAt - now : 0
        return Math.max(0, until - now, local)
      })

    const exchange = (route: string, request: HttpClientRequest.HttpClientRequest) =>
      client.execute(request).pipe(
        Effect.flatMap((response) =>
          Effect.map(response.text, (text) => ({ status: response.status, headers: response.headers, text }))
        ),
        Effect.mapError((error) =>
          new DiscordTransportError({ route, message: `Discord ${route} failed: ${describeTransportError(error)}` })
        ),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new DiscordTransportError({ route, message: `Discord ${route} failed: timed out` })
        })
      )

    const request: Api["request"] = (method, path, requestOptions = {}) => {
      const route = routeOf(method, path)
      if (requestOptions.auth === true && botToken === undefined) {
        return Effect.fail(
          new DiscordApiError({
            route,
            status: 401,
            message: `Discord ${route} needs a bot token (DISCORD_BOT_TOKEN), and none is configured`
          })
        )
      }
      let built = HttpClientRequest.make(method)(`${apiBase}${path}`).pipe(
        HttpClientRequest.setHeader("user-agent", userAgent),
        HttpClientRequest.acceptJson
      )
      if (requestOptions.auth === true) built = HttpClientRequest.setHeader(built, "authorization", `Bot ${botToken}`)
      if (requestOptions.body !== undefined) built = HttpClientRequest.bodyUnsafeJson(built, requestOptions.body)
      const budget = Duration.toMillis(requestOptions.maxWait ?? "10 seconds")

      const attempt = (started: number, tries: number): Effect.Effect<unknown, ApiError> =>
        Effect.gen(function*() {
          const before = yield* Clock.currentTimeMillis
          const wait = yield* waitFor(route, before)
          if (wait > 0) {
            if (before + wait - started > budget) {
              return yield* new DiscordApiError({
                route,
                status: 429,
                retryAfterMillis: wait,
                message: `Discord ${route} is rate limited for ${Math.ceil(wait)} ms more`
              })
            }
            yield* Effect.sleep(Duration.millis(wait))
          }
          const { headers, status, text } = yield* exchange(route, built)
          const now = yield* Clock.currentTimeMillis
          const remaining = header(headers, "x-ratelimit-remaining")
          const resetAfter = header(headers, "x-ratelimit-reset-after")
          if (remaining !== undefined && resetAfter !== undefined) {
            remember(route, { remaining, resetAt: now + resetAfter * 1000 }, now)
          }
          const body = parseJson(text)
          if (status >= 200 && status < 300) return body
          const error = Option.getOrUndefined(decodeErrorBody(body))
          if (status === 429) {
            const retryAfter = Math.max(0, (error?.retry_after ?? header(headers, "retry-after") ?? 1) * 1000)
            const global = error?.global === true || headers["x-ratelimit-global"] === "true"
            if (global) yield* Ref.update(globalUntil, (until) => Math.max(until, now + retryAfter))
            else remember(route, { remaining: 0, resetAt: now + retryAfter }, now)
            if (tries < 5 && now + retryAfter - started <= budget) return yield* attempt(started, tries + 1)
            return yield* new DiscordApiError({
              route,
              status,
              retryAfterMillis: retryAfter,
              global,
              message: `Discord ${route} failed: 429 rate limited${global ? " (global)" : ""}, retry after ${
                Math.ceil(retryAfter)
              } ms`
            })
          }
          return yield* new DiscordApiError({
            route,
            status,
            ...(error?.code === undefined ? {} : { code: error.code }),
            message: `Discord ${route} failed: ${status} ${error?.message ?? "(no message)"}${
              error?.code === undefined ? "" : ` (code ${error.code})`
            }`
          })
        })

      return Effect.flatMap(Clock.currentTimeMillis, (started) => attempt(started, 1)).pipe(
        Effect.withSpan("Discord.Api.request", {
          kind: "client",
          captureStackTrace: false,
          attributes: { "discord.route": route }
        })
      )
    }

    return { hasBotToken: botToken !== undefined, request }
  })
