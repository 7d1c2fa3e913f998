/**
 * The Invocations channel: the smallest useful wire. `POST /invocations` with
 * `{ "message": string, "session_id"?: string, "stream"?: boolean }` answers `{ "response", "session_id" }`,
 * or, streaming, SSE `data:` lines per chunk ending with `data: [DONE]` (an `event: error` frame on failure).
 * `"on_disconnect": "cancel"` (or the `x-agent-on-disconnect` header) cancels the turn when the caller goes away.
 * Also when the host's shutdown stops the turn: an `event: error` frame, or a 503 with `retry-after`.
 */
import type { ParseResult } from "effect"
import { Effect, Option, Schema, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks } from "../core/Channel.js"
import * as ChannelModule from "../core/Channel.js"
import type { OnDisconnect } from "../core/Sessions.js"
import type { ChannelRequest } from "../domain/ChannelRequest.js"
import type { TurnError } from "../domain/Errors.js"
import { turnErrorHeaders, turnErrorStatus } from "../domain/Errors.js"
import { type IsolationKey, issueId } from "../domain/Ids.js"
import { responseText, userMessage } from "../domain/Message.js"
import { makeChecker } from "../http/ApiKeys.js"
import { describeBodyError, errorJson, json, readJson } from "../http/HttpBody.js"
import { onDisconnectOf } from "../http/OnDisconnect.js"
import * as Sse from "../http/Sse.js"
import { userScopedKey } from "../http/UserScope.js"

export const InvocationBody = Schema.Struct({
  message: Schema.String.pipe(Schema.minLength(1, { message: () => "message must be a non-empty string" })),
  session_id: Schema.optional(
    Schema.String.pipe(
      Schema.minLength(1, { message: () => "session_id must be a non-empty string" }),
      Schema.maxLength(200, { message: () => "session_id must be at most 200 characters" }),
      // It comes back in the `x-session-id` header of a stream: printable ASCII, no edge spaces.
      Schema.pattern(/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/, {
        message: () => "session_id must be printable ASCII (letters, digits, punctuation; spaces only inside)"
      })
    )
  ),
  stream: Schema.optional(Schema.Boolean),
  /** Checked by `onDisconnectOf`, so a bad value gets a precise message. */
  on_disconnect: Schema.optional(Schema.Unknown)
})
export type InvocationBody = typeof InvocationBody.Type

const decodeBody = Schema.decodeUnknownEither(InvocationBody, { errors: "first", onExcessProperty: "ignore" })

export interface Options {
  readonly name?: string
  readonly path?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
  /** What a caller's disconnect does to its turn when the request does not say (default `continue`). */
  readonly onDisconnect?: OnDisconnect
}

const turnErrorResponse = (error: TurnError) =>
  errorJson(
    turnErrorStatus(error),
    error._tag === "AgentError" ? "agent_error" : error._tag,
    error.message,
    error._tag === "AgentError" && error.requestId !== undefined ? { request_id: error.requestId } : undefined,
    turnErrorHeaders(error)
  )

const describeParseError = (error: ParseResult.ParseError): string => {
  const message = error.message
  if (message.includes("is missing") && message.includes("message")) return "message is required"
  const firstLine = message.split("\n").pop()?.trim() ?? message
  return firstLine.replace(/^└─ /, "")
}

// A session id is a bearer handle on the conversation: it comes from the CSPRNG.
const newSessionId = issueId("inv_")

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "invocations"
  return ChannelModule.make(name, (ctx: ChannelContext) =>
    Effect.sync(() => {
      const authorized = makeChecker(ctx.settings.apiKeys)
      const handle = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) {
            return errorJson(401, "unauthorized", "a valid API key is required: send Authorization: Bearer <key>")
          }
          const raw = yield* readJson(input.request, ctx.settings).pipe(Effect.either)
          if (raw._tag === "Left") {
            const problem = describeBodyError(raw.left)
            return errorJson(problem.status, problem.type, problem.message)
          }
          if (raw.right === null || typeof raw.right !== "object" || Array.isArray(raw.right)) {
            return errorJson(422, "invalid_request", "the request body must be a JSON object")
          }
          const decoded = decodeBody(raw.right)
          if (decoded._tag === "Left") {
            return errorJson(422, "invalid_request", describeParseError(decoded.left))
          }
          const body = decoded.right
          const onDisconnect = onDisconnectOf(input.request, body.on_disconnect, options.onDisconnect ?? "continue")
          if (typeof onDisconnect !== "string") return errorJson(422, "invalid_request", onDisconnect.message)
          const sessionId = body.session_id ?? (input.isolation.chat === undefined ? yield* newSessionId : undefined)
          // A session id is a name the caller picks: with a trusted user key, each user has their own session of
          // that name (another user's session_id starts a separate session, never theirs).
          const key = sessionId === undefined ?
            input.isolation.chat! :
            userScopedKey(input.isolation.user, `${name}:${sessionId}`)
          const request: ChannelRequest = {
            channel: name,
            operation: "invoke",
            input: [userMessage(body.message)],
            session: body.session_id === undefined && sessionId !== undefined ?
              { isolationKey: key as IsolationKey, fresh: true } :
              { isolationKey: key as IsolationKey },
            attributes: sessionId === undefined ? {} : { session_id: sessionId },
            stream: body.stream === true,
            onDisconnect
          }
          const sessionOut = sessionId ?? null
          if (!request.stream) {
            return yield* ctx.run(request, body).pipe(
              Effect.map(({ originating }) =>
                json({
                  response: Option.isSome(originating) ? responseText(originating.value.response) : "",
                  session_id: sessionOut
                })
              ),
              Effect.catchAll((error) => Effect.succeed(turnErrorResponse(error)))
            )
          }
          const started = yield* ctx.runStream(request, body).pipe(Effect.either)
          if (started._tag === "Left") return turnErrorResponse(started.left)
          const turn = started.right
          const frames = turn.updates.pipe(
            Stream.mapConcat((update) => {
              let text = ""
              for (const part of update.contents) if (part._tag === "text") text += part.text
              return text.length === 0 ? [] : [Sse.frame(text)]
            }),
            Stream.concat(
              Stream.fromEffect(Effect.as(turn.result, "data: [DONE]\n\n"))
            ),
            Stream.catchAll((error) => Stream.make(Sse.frame(error.message, "error")))
          )
          return Sse.response(frames, sessionId === undefined ? undefined : { "x-session-id": sessionId })
        })
      )
      return {
        kind: "programmatic",
        path: options.path ?? "/invocations",
        routes: [{ method: "POST", path: "/", handler: handle, body: "json" }],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: "POST JSON or SSE"
      }
    }))
}
