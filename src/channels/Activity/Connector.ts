/**
 * The Bot Connector REST API, as much as the channel uses: send an activity to a conversation (as a reply to an
 * activity, or not), and create a conversation. Every call carries the bot's token; a 401 drops the cached token
 * and tries once more with a fresh one. Failures are typed with what the connector said: its status, its error
 * code (`ContentStreamNotAllowed`), and its `Retry-After`.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { Duration } from "effect"
import { Clock, Effect, Schedule, Schema } from "effect"
import type { ChannelAccount } from "./Schema.js"
import { ResourceResponse } from "./Schema.js"
import type { Tokens } from "./Token.js"

/** A connector call failed: `status` 0 when no answer came. */
export class ConnectorError extends Schema.TaggedError<ConnectorError>()("ConnectorError", {
  operation: Schema.String,
  status: Schema.Number,
  /** The connector's `error.code` (`ContentStreamNotAllowed`, ...). */
  code: Schema.optional(Schema.String),
  retryAfterMillis: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** Worth trying again: rate limits, server errors, no answer (and no token for those reasons). */
export const isRetryable = (error: ConnectorError): boolean =>
  error.status === 0 || error.status === 429 || error.status >= 500

export interface Connector {
  /** Posts `activity` to the conversation, as a reply to `replyToId` when given; the id the connector gave it. */
  readonly send: (
    serviceUrl: string,
    conversationId: string,
    activity: Record<string, unknown>,
    replyToId?: string
  ) => Effect.Effect<string | undefined, ConnectorError>
  /** Creates a 1:1 conversation with `user`; its id. */
  readonly createConversation: (serviceUrl: string, params: {
    readonly bot: ChannelAccount
    readonly user: ChannelAccount
    readonly tenantId: string | undefined
  }) => Effect.Effect<string, ConnectorError>
}

const ErrorBody = Schema.Struct({
  error: Schema.optional(
    Schema.Struct({ code: Schema.optional(Schema.String), message: Schema.optional(Schema.String) })
  )
})
const decodeErrorBody = Schema.decodeUnknownOption(ErrorBody)
const decodeResource = Schema.decodeUnknownOption(ResourceResponse)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds. */
const retryAfter = (header: string | undefined, now: number): number | undefined => {
  if (header === undefined) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const base = (serviceUrl: string) => serviceUrl.replace(/\/+$/, "")

export const make = (tokens: Tokens, options: { readonly timeout?: Duration.DurationInput } = {}) =>
  Effect.map(HttpClient.HttpClient, (httpClient): Connector => {
    const client = httpClient
    const timeout = options.timeout ?? "30 seconds"

    const call = (
      operation: string,
      url: string,
      body: unknown
    ): Effect.Effect<unknown, ConnectorError> => {
      const attempt = (fresh: boolean): Effect.Effect<unknown, ConnectorError> =>
        Effect.gen(function*() {
          const token = yield* tokens.get.pipe(
            Effect.mapError((error) =>
              new ConnectorError({
                operation,
                status: error.status === 0 || error.status >= 500 ? 0 : 401,
                message: error.message
              })
            )
          )
          const request = HttpClientRequest.post(url).pipe(
            HttpClientRequest.bearerToken(token),
            HttpClientRequest.bodyUnsafeJson(body)
          )
          const response = yield* client.execute(request).pipe(
            Effect.flatMap((r) => Effect.map(r.text, (text) => ({ status: r.status, headers: r.headers, text }))),
            Effect.timeout(timeout),
            Effect.mapError((error) =>
              new ConnectorError({ operation, status: 0, message: `${operation} failed: ${error.message}` })
            )
          )
          const json = parseJson(response.text)
          if (response.status >= 200 && response.status < 300) return json
          if (response.status === 401 && !fresh) {
            yield* tokens.invalidate
            return yield* attempt(true)
          }
          const error = decodeErrorBody(json)
          const code = error._tag === "Some" ? error.value.error?.code : undefined
          const detail = error._tag === "Some" ? error.value.error?.message : undefined
          const wait = retryAfter(response.headers["retry-after"], yield* Clock.currentTimeMillis)
          return yield* new ConnectorError({
            operation,
            status: response.status,
            ...(code === undefined ? {} : { code }),
            ...(wait === undefined ? {} : { retryAfterMillis: wait }),
            message: `${operation} failed: HTTP ${response.status}${code === undefined ? "" : ` ${code}`}${
              detail === undefined ? "" : `: ${detail.slice(0, 200)}`
            }`
          })
        })
      return attempt(false).pipe(
        Effect.withSpan(`Activity.Connector.${operation}`, { kind: "client", attributes: { url } })
      )
    }

    const send: Connector["send"] = (serviceUrl, conversationId, activity, replyToId) => {
      const conversation = encodeURIComponent(conversationId)
      const url = replyToId === undefined ?
        `${base(serviceUrl)}/v3/conversations/${conversation}/activities` :
        `${base(serviceUrl)}/v3/conversations/${conversation}/activities/${encodeURIComponent(replyToId)}`
      return Effect.map(call("sendActivity", url, activity), (json) => {
        const resource = decodeResource(json)
        return resource._tag === "Some" ? resource.value.id : undefined
      })
    }

    const createConversation: Connector["createConversation"] = (serviceUrl, params) =>
      Effect.flatMap(
        call("createConversation", `${base(serviceUrl)}/v3/conversations`, {
          bot: params.bot,
          members: [{ id: params.user.id }],
          isGroup: false,
          ...(params.tenantId === undefined
            ? {}
            : { tenantId: params.tenantId, channelData: { tenant: { id: params.tenantId } } })
        }),
        (json) => {
          const resource = decodeResource(json)
          return resource._tag === "Some" && resource.value.id !== undefined ?
            Effect.succeed(resource.value.id) :
            Effect.fail(
              new ConnectorError({
                operation: "createConversation",
                status: 502,
                message: "createConversation answered no id"
              })
            )
        }
      )

    return { send, createConversation }
  })

/**
 * Retries what is worth retrying, a few times: a 429 waits its `Retry-After` (at most a minute), the rest back off
 * exponentially from half a second.
 */
export const withRetry = <A>(
  effect: Effect.Effect<A, ConnectorError>,
  attempts = 4
): Effect.Effect<A, ConnectorError> =>
  Effect.retry(effect, {
    schedule: Schedule.identity<ConnectorError>().pipe(
      Schedule.addDelay((error) => Math.min(error.retryAfterMillis ?? 0, 60_000)),
      Schedule.intersect(Schedule.exponential("500 millis", 2)),
      Schedule.intersect(Schedule.recurs(attempts - 1))
    ),
    while: isRetryable
  })
