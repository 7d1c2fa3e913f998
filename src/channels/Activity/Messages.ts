/**
 * `POST /api/messages`, where Azure Bot Service delivers activities. The token is checked before anything else is
 * read or done (401/403, and no turn runs), the body is decoded and its service URL checked against the
 * allowlist, and then the request is answered at once: messages and conversation updates are queued behind the
 * conversation's earlier ones (their replies go out through the connector), invokes get their invoke response.
 */
import { HttpServerResponse } from "@effect/platform"
import { Effect, Either } from "effect"
import type { ChannelContext, Route } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { IsolationKey } from "../../domain/Ids.js"
import { describeBodyError, errorJson, json, readJson } from "../../http/HttpBody.js"
import type { Authenticator } from "./Auth.js"
import { isolationKey } from "./Inbound.js"
import type { Activity } from "./Schema.js"
import { decodeActivity } from "./Schema.js"

export interface Handlers {
  /** Queues a message or conversation update behind the conversation's earlier ones. */
  readonly accept: (activity: Activity, raw: unknown, key: IsolationKey) => Effect.Effect<void>
  /** Answers an invoke: the invoke response's status and body. */
  readonly invoke: (
    activity: Activity,
    raw: unknown,
    key: IsolationKey
  ) => Effect.Effect<{ readonly status: number; readonly body: unknown }>
}

export const route = (deps: {
  readonly ctx: ChannelContext
  readonly auth: Authenticator
  readonly serviceUrlAllowed: (url: string) => boolean
  readonly prefix: string
  readonly handlers: Handlers
}): Route => {
  const { auth, ctx, handlers } = deps

  const handler = ChannelModule.handler((input) =>
    Effect.gen(function*() {
      const header = input.request.headers["authorization"]
      // Before the body is read: an unauthenticated caller costs us nothing more.
      if (header === undefined || header.length === 0) {
        return errorJson(401, "unauthorized", "the Authorization header with a Bearer token is missing")
      }
      const body = yield* Effect.either(readJson(input.request, ctx.settings))
      if (body._tag === "Left") {
        const problem = describeBodyError(body.left)
        return errorJson(problem.status, problem.type, problem.message)
      }
      const decoded = decodeActivity(body.right)
      if (Either.isLeft(decoded)) {
        return errorJson(400, "invalid_activity", `the body is not an Activity: ${decoded.left}`)
      }
      const activity = decoded.right
      const verified = yield* Effect.either(auth.authenticate(header, activity))
      if (Either.isLeft(verified)) {
        yield* Effect.logInfo("activity rejected", verified.left.message)
        return errorJson(
          verified.left.status,
          verified.left.status === 401 ? "unauthorized" : "forbidden",
          verified.left.message
        )
      }
      if (!deps.serviceUrlAllowed(activity.serviceUrl)) {
        yield* Effect.logWarning("activity rejected: service URL not allowed", activity.serviceUrl)
        return errorJson(403, "forbidden", "the activity's serviceUrl is not on the allowlist (ACTIVITY_SERVICE_URLS)")
      }
      const key = isolationKey(activity.conversation.id, deps.prefix)
      if (Either.isLeft(key)) return errorJson(400, "invalid_activity", `conversation.id: ${key.left.message}`)
      if (activity.type === "invoke") {
        const answer = yield* handlers.invoke(activity, body.right, key.right)
        return json(answer.body, answer.status)
      }
      // Acknowledged at once: the reply goes out through the connector, so a slow model never times Azure out.
      yield* handlers.accept(activity, body.right, key.right)
      return HttpServerResponse.empty({ status: 202 })
    })
  )
  return { method: "POST", path: "/api/messages", handler, body: "json" }
}
