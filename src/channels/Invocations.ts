/**
 * The Invocations channel: the smallest useful wire. `POST /invocations` with
 * `{ "message": string, "session_id"?: string, "stream"?: boolean }` answers `{ "response", "session_id" }`,
 * or, streaming, SSE `data:` lines per chunk ending with `data: [DONE]` (an `event: error` frame on failure).
 * `"on_disconnect": "cancel"` (or the `x-agent-on-disconnect` header) cancels the turn when the caller goes away.
 * Also when the host's shutdown stops the turn: an `event: error` frame, or a 503 with `retry-after`.
 */
import type { HttpServerResponse } from "@effect/platform"
import { Effect, Either, Option, Schema } from "effect"
import type { Channel, ChannelContext, ChannelHooks, StreamExtras } from "../core/Channel.js"
import * as ChannelModule from "../core/Channel.js"
import type { OnDisconnect } from "../core/Sessions.js"
import type { ChannelRequest } from "../domain/ChannelRequest.js"
import { isolationKey, randomId } from "../domain/Ids.js"
import { responseText, userMessage } from "../domain/Message.js"
import { makeChecker } from "../http/ApiKeys.js"
import { errorJson, json } from "../http/HttpBody.js"
import { readJsonObject } from "../http/JsonObject.js"
import { onDisconnectOf } from "../http/OnDisconnect.js"
import * as Sse from "../http/Sse.js"
import { turnErrorJson } from "../http/TurnErrors.js"
import { userScopedKey } from "../http/UserScope.js"

// It comes back in the `x-session-id` header of a stream: printable ASCII, no edge spaces.
const sessionIdPattern = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/

/** The request body, as documentation and for clients; the handler checks it with `bodyProblem` (same rules). */
export const InvocationBody = Schema.Struct({
  message: Schema.String.pipe(Schema.minLength(1, { message: () => "message must be a non-empty string" })),
  session_id: Schema.optional(
    Schema.String.pipe(
      Schema.minLength(1, { message: () => "session_id must be a non-empty string" }),
      Schema.maxLength(200, { message: () => "session_id must be at most 200 characters" }),
      Schema.pattern(sessionIdPattern, {
        message: () => "session_id must be printable ASCII (letters, digits, punctuation; spaces only inside)"
      })
    )
  ),
  stream: Schema.optional(Schema.Boolean),
  /** Checked by `onDisconnectOf`, so a bad value gets a precise message. */
  on_disconnect: Schema.optional(Schema.Unknown)
})
export type InvocationBody = typeof InvocationBody.Type

/** Why `body` is not an `InvocationBody` (the schema's rules as plain checks: no decode per request). */
export const bodyProblem = (body: Record<string, unknown>): string | undefined => {
  const { message, session_id, stream } = body
  if (message === undefined) return "message is required"
  if (typeof message !== "string" || message.length === 0) return "message must be a non-empty string"
  if (session_id !== undefined) {
    if (typeof session_id !== "string" || session_id.length === 0) return "session_id must be a non-empty string"
    if (session_id.length > 200) return "session_id must be at most 200 characters"
    if (!sessionIdPattern.test(session_id)) {
      return "session_id must be printable ASCII (letters, digits, punctuation; spaces only inside)"
    }
  }
  if (stream !== undefined && typeof stream !== "boolean") return "stream must be a boolean"
  return undefined
}

export interface Options {
  readonly name?: string
  readonly path?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
  /** What a caller's disconnect does to its turn when the request does not say (default `continue`). */
  readonly onDisconnect?: OnDisconnect
}

/** The stream is read in the request's fiber (the live body): an idle session's turn may run there. */
const inlineStream: StreamExtras = { inline: true }

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "invocations"
  return ChannelModule.make(name, (ctx: ChannelContext) =>
    Effect.sync(() => {
      const authorized = makeChecker(ctx.settings.apiKeys)
      // The stream's response: the turn's text as `data:` frames, then `[DONE]` (or an `error` frame).
      const streamed = (request: ChannelRequest, body: InvocationBody, sessionId: string | undefined) =>
        Effect.map(Effect.either(ctx.runStream(request, body, inlineStream)), (started) => {
          if (started._tag === "Left") return turnErrorJson(started.left)
          const turn = started.right
          // Written as the turn runs: the text of each chunk of updates as `data:` frames, then `[DONE]` once the
          // turn is over, or an `error` frame. A chunk is in memory already: written without waiting on the reader
          // (an inline turn runs in this fiber and must not wait on its client).
          const frames = Sse.produce((emit, emitNow) =>
            ChannelModule.forEachUpdateChunk(turn, (chunk) => {
              let out = ""
              for (const update of chunk) {
                let text = ""
                for (const part of update.contents) if (part._tag === "text") text += part.text
                if (text.length > 0) out += Sse.frame(text)
              }
              return out.length === 0 ? Effect.void : Effect.sync(() => emitNow(out))
            }).pipe(
              Effect.zipRight(turn.result),
              Effect.matchEffect({
                onSuccess: () => emit("data: [DONE]\n\n"),
                onFailure: (error) => emit(Sse.frame(error.message, "error"))
              })
            )
          )
          return Sse.response(frames, sessionId === undefined ? undefined : { "x-session-id": sessionId })
        })

      // Plain functions and one `matchEffect` per wait (no generator): this runs for every request.
      const invoke = (
        input: ChannelModule.RouteInput,
        raw: Record<string, unknown>
      ): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
        const problem = bodyProblem(raw)
        if (problem !== undefined) return Effect.succeed(errorJson(422, "invalid_request", problem))
        const body = raw as InvocationBody
        const onDisconnect = onDisconnectOf(input.request, body.on_disconnect, options.onDisconnect ?? "continue")
        if (typeof onDisconnect !== "string") {
          return Effect.succeed(errorJson(422, "invalid_request", onDisconnect.message))
        }
        // A session id is a bearer handle on the conversation: it comes from the CSPRNG.
        const sessionId = body.session_id ?? (input.isolation.chat === undefined ? `inv_${randomId()}` : undefined)
        // A session id is a name the caller picks: with a trusted user key, each user has their own session of
        // that name (another user's session_id starts a separate session, never theirs).
        const key = isolationKey(
          sessionId === undefined ?
            input.isolation.chat! :
            userScopedKey(input.isolation.user, `${name}:${sessionId}`)
        )
        if (Either.isLeft(key)) return Effect.succeed(turnErrorJson(key.left))
        const request: ChannelRequest = {
          channel: name,
          operation: "invoke",
          input: [userMessage(body.message)],
          // A session id minted here names a session nothing is stored under yet.
          session: body.session_id === undefined && sessionId !== undefined ?
            { isolationKey: key.right, fresh: true } :
            { isolationKey: key.right },
          attributes: sessionId === undefined ? {} : { session_id: sessionId },
          stream: body.stream === true,
          onDisconnect
        }
        if (request.stream) return streamed(request, body, sessionId)
        const sessionOut = sessionId ?? null
        return Effect.matchEffect(ctx.run(request, body), {
          onFailure: (error) => Effect.succeed(turnErrorJson(error)),
          onSuccess: ({ originating }) =>
            Effect.succeed(json({
              response: Option.isSome(originating) ? responseText(originating.value.response) : "",
              session_id: sessionOut
            }))
        })
      }

      const handle = ChannelModule.handler((input) => {
        if (!authorized(input.request)) {
          return Effect.succeed(
            errorJson(401, "unauthorized", "a valid API key is required: send Authorization: Bearer <key>")
          )
        }
        return Effect.matchEffect(readJsonObject(input.request, ctx.settings), {
          // Valid JSON of the wrong shape is this wire's 422, like any other shape problem.
          onFailure: (problem) =>
            Effect.succeed(
              errorJson(problem.reason === "NotAnObject" ? 422 : problem.status, problem.type, problem.message)
            ),
          onSuccess: (raw) => invoke(input, raw)
        })
      })
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
