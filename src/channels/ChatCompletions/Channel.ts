/**
 * The OpenAI Chat Completions channel: `POST /v1/chat/completions`, JSON or SSE (`chat.completion.chunk`s, then
 * `data: [DONE]`), with function tools (`tool_calls` out, assistant `tool_calls` and `tool` messages in),
 * `response_format` and `stream_options.include_usage`. See docs/CHAT_COMPLETIONS.md.
 *
 * A Chat Completions request carries its whole conversation, so the session is the caller's choice:
 * - `metadata.session_id` (scoped to the trusted user, if any) or a trusted chat isolation header names a session
 *   the host keeps; the turn's input is then only the messages after the request's last assistant message (what
 *   the session has not seen), so history is never stored twice;
 * - otherwise every request is a fresh session (a CSPRNG key) whose input is the request's messages.
 * System and developer messages become the turn's instructions (never stored as history).
 */
import type { Duration } from "effect"
import { Effect, Either, Option, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks, RouteInput } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { OnDisconnect } from "../../core/Sessions.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { FunctionCallContent, Usage } from "../../domain/Content.js"
import type { TurnError } from "../../domain/Errors.js"
import type { ChannelName } from "../../domain/Ids.js"
import { isolationKey, issueId } from "../../domain/Ids.js"
import type { FinishReason } from "../../domain/Message.js"
import * as Time from "../../domain/Time.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { json } from "../../http/HttpBody.js"
import { readJsonObject } from "../../http/JsonObject.js"
import { onDisconnectOf } from "../../http/OnDisconnect.js"
import * as Sse from "../../http/Sse.js"
import { describeTurnError } from "../../http/TurnErrors.js"
import { userScopedKey } from "../../http/UserScope.js"
import type { Meta } from "./Render.js"
import { chunkFrame, completion, DONE, finishReasonOf, toolCallsJson, usageJson } from "./Render.js"
import { errorBody, errorResponse, newMessages, parseRequest } from "./Wire.js"

export interface Options {
  readonly name?: string
  /** Mount prefix (default `/v1`, so `new OpenAI({ baseURL: "<host>/v1" })` works). */
  readonly path?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
  /** The `model` reported when the request names none (default: the target's name). */
  readonly model?: string
  /** SSE comment sent when the agent has been silent this long (default 15 seconds). */
  readonly heartbeatInterval?: Duration.DurationInput
  /** What a caller's disconnect does to its turn when the request does not say (default `continue`). */
  readonly onDisconnect?: OnDisconnect
}

const turnErrorResponse = (error: TurnError) => {
  const parts = describeTurnError(error)
  return errorResponse(
    parts.status,
    parts.code,
    parts.url === undefined ? parts.message : `${parts.message} (${parts.url})`,
    parts.param ?? null,
    parts.headers
  )
}

const turnErrorFrame = (error: TurnError) => {
  const parts = describeTurnError(error)
  return `data: ${JSON.stringify(errorBody(parts.status, parts.code, parts.message, parts.param ?? null))}\n\n`
}

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "chat-completions"
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const beats = yield* Sse.heartbeat(options.heartbeatInterval ?? "15 seconds")
      const authorized = makeChecker(ctx.settings.apiKeys)
      const defaultModel = options.model ?? ctx.target.name
      const unauthorized = errorResponse(
        401,
        "invalid_api_key",
        "a valid API key is required: send Authorization: Bearer <key>"
      )
      const invalid = (message: string, param: string | null, code = "invalid_request") =>
        errorResponse(400, code, message, param)

      /** The stream of one turn: a role chunk, text deltas as they come, then calls, finish, usage, `[DONE]`. */
      const streamed = (meta: Meta, includeUsage: boolean, turn: ChannelModule.TurnStream) => {
        const usageField = includeUsage ? null : undefined
        // Calls seen so far; a result in the stream means the target ran that call itself.
        const calls: Array<FunctionCallContent> = []
        const answered = new Set<string>()
        let usage: Usage | undefined
        let finishReason: FinishReason | undefined
        const head = Stream.make(
          chunkFrame(meta, { delta: { role: "assistant", content: "" }, finish_reason: null }, usageField)
        )
        const body = Stream.mapConcat(turn.updates, (update) => {
          let text = ""
          for (const c of update.contents) {
            if (c._tag === "text") text += c.text
            else if (c._tag === "function_call") calls.push(c)
            else if (c._tag === "function_result") answered.add(c.callId)
            else if (c._tag === "usage") usage = c.usage
          }
          if (update.finishReason !== undefined) finishReason = update.finishReason
          return text.length === 0
            ? []
            : [chunkFrame(meta, { delta: { content: text }, finish_reason: null }, usageField)]
        })
        const tail = Stream.fromIterableEffect(Effect.map(turn.result, (outcome) => {
          const frames: Array<string> = []
          const pending = calls.filter((c) => !answered.has(c.callId))
          if (pending.length > 0) {
            const deltas = toolCallsJson(pending).map((call, index) => ({ index, ...call }))
            frames.push(chunkFrame(meta, { delta: { tool_calls: deltas }, finish_reason: null }, usageField))
          }
          const response = Option.getOrUndefined(outcome.originating)?.response
          const reason = finishReasonOf(response?.finishReason ?? finishReason, pending.length > 0)
          frames.push(chunkFrame(meta, { delta: {}, finish_reason: reason }, usageField))
          if (includeUsage) {
            frames.push(
              chunkFrame(meta, undefined, usageJson(response?.usage ?? usage ?? outcome.result.response.usage))
            )
          }
          frames.push(DONE)
          return frames
        }))
        const frames = Stream.concat(Stream.concat(head, body), tail).pipe(
          Stream.catchAll((error) => Stream.make(turnErrorFrame(error)))
        )
        return Sse.response(beats.withHeartbeat(frames))
      }

      const create = (input: RouteInput) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const raw = yield* Effect.either(readJsonObject(input.request, ctx.settings))
          if (Either.isLeft(raw)) return errorResponse(raw.left.status, raw.left.type, raw.left.message)
          const parsed = parseRequest(raw.right)
          if ("problem" in parsed) return invalid(parsed.problem.message, parsed.problem.param, parsed.problem.code)
          const onDisconnect = onDisconnectOf(input.request, parsed.onDisconnect, options.onDisconnect ?? "continue")
          if (typeof onDisconnect !== "string") return invalid(onDisconnect.message, onDisconnect.param)
          // Completion ids name nothing the caller can fetch, but they key a fresh session: from the CSPRNG.
          const id = yield* issueId("chatcmpl-")
          const kept = parsed.sessionId !== undefined || input.isolation.chat !== undefined
          const sessionKey = parsed.sessionId !== undefined ?
            userScopedKey(input.isolation.user, `${name}:${parsed.sessionId}`) :
            input.isolation.chat ?? `${name}:${id}`
          const key = isolationKey(sessionKey)
          if (Either.isLeft(key)) return turnErrorResponse(key.left)
          const messages = kept ? newMessages(parsed.messages) : parsed.messages
          if (messages.length === 0) {
            return invalid(
              "messages: the last message is the assistant's; a kept session (metadata.session_id) needs a new " +
                "user or tool message after it",
              "messages"
            )
          }
          const request: ChannelRequest = {
            channel: name,
            operation: "message.create",
            input: messages,
            session: kept ? { isolationKey: key.right } : { isolationKey: key.right, fresh: true },
            ...(parsed.user === undefined ? {} : {
              identity: { channel: name as ChannelName, nativeId: parsed.user }
            }),
            options: parsed.options,
            attributes: { responseId: id },
            stream: parsed.stream,
            onDisconnect
          }
          const meta: Meta = {
            id,
            created: Math.floor((yield* Time.now) / 1000),
            model: parsed.model ?? defaultModel
          }
          if (!parsed.stream) {
            const outcome = yield* Effect.either(ctx.run(request, raw.right))
            if (Either.isLeft(outcome)) return turnErrorResponse(outcome.left)
            const shaped = Option.getOrUndefined(outcome.right.originating)
            return json(
              completion(meta, shaped?.response, shaped?.response.usage ?? outcome.right.result.response.usage)
            )
          }
          const started = yield* Effect.either(ctx.runStream(request, raw.right))
          if (Either.isLeft(started)) return turnErrorResponse(started.left)
          return streamed(meta, parsed.includeUsage, started.right)
        })

      return {
        kind: "programmatic",
        path: options.path ?? "/v1",
        routes: [{ method: "POST", path: "/chat/completions", handler: create, body: "json" }],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: "POST /chat/completions (JSON or SSE)"
      }
    }))
}
