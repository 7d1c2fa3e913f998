/**
 * Replies from other channels (`ChannelPush`), delivered by the durable push runner: the user's stored
 * conversation reference names where to send. A 1:1 reference is used as is; when the user has only written in
 * group chats, a 1:1 conversation is created (`POST {serviceUrl}/v3/conversations`) and remembered. Failures are
 * classified for the runner (429 with its wait, 5xx and no answer retryable; the rest final), and a retried push
 * skips the parts it already delivered.
 */
import { Duration, Effect, Schema } from "effect"
import type { ChannelContext, ChannelPush } from "../../core/Channel.js"
import { PushFailed } from "../../core/Channel.js"
import type { Connector, ConnectorError } from "./Connector.js"
import { isRetryable } from "./Connector.js"
import { decodeStoredReference, referenceKey } from "./Inbound.js"
import type { Replies } from "./Replies.js"
import { ReferenceJson } from "./Schema.js"

const toPushFailed = (error: ConnectorError): PushFailed =>
  new PushFailed({
    reason: error.status === 0 ?
      "unreachable" :
      error.status === 429 ?
      "rate_limited" :
      error.status >= 500 ?
      "unavailable" :
      "rejected",
    retryable: isRetryable(error),
    ...(error.retryAfterMillis === undefined ? {} : { retryAfter: Duration.millis(error.retryAfterMillis) }),
    message: error.message
  })

const encodeReference = Schema.encodeSync(ReferenceJson)

export const make = (deps: {
  readonly ctx: ChannelContext
  readonly connector: Connector
  readonly replies: Replies
  readonly name: string
  readonly serviceUrlAllowed: (url: string) => boolean
}): ChannelPush => {
  const { connector, ctx, replies } = deps
  // Parts of a push already delivered, per idempotency key, so a retried push does not repeat them.
  const progress = new Map<string, number>()

  const push: ChannelPush["push"] = Effect.fn("Activity.Push.push")(
    function*(identity, result, options) {
      const key = referenceKey(deps.name, identity.nativeId)
      const stored = yield* ctx.state.getCursor(key)
      const reference = stored._tag === "Some" ? decodeStoredReference(stored.value) : undefined
      if (reference === undefined || reference._tag === "None") {
        return yield* new PushFailed({
          reason: "rejected",
          retryable: false,
          message: `no conversation with "${identity.nativeId}" is known: the user must message the bot first`
        })
      }
      let ref = reference.value
      if (!deps.serviceUrlAllowed(ref.serviceUrl)) {
        return yield* new PushFailed({
          reason: "rejected",
          retryable: false,
          message: `the stored service URL of "${identity.nativeId}" is not on the allowlist`
        })
      }
      if (!ref.personal) {
        const conversationId = yield* connector.createConversation(ref.serviceUrl, {
          bot: ref.bot,
          user: ref.user,
          tenantId: ref.tenantId
        }).pipe(Effect.mapError(toPushFailed))
        ref = { ...ref, conversationId, personal: true }
        yield* ctx.state.setCursor(key, encodeReference(ref))
      }
      const target = {
        serviceUrl: ref.serviceUrl,
        conversationId: ref.conversationId,
        replyToId: undefined,
        teams: ref.channelId === "msteams",
        personal: true
      }
      const activities = replies.render(result.response, target).map((activity) =>
        options.isEcho ? { ...activity, entities: undefined, attachments: undefined, channelData: undefined } : activity
      )
      const progressKey = `${options.idempotencyKey}:${options.isEcho ? "echo" : "reply"}`
      const done = progress.get(progressKey) ?? 0
      for (let i = done; i < activities.length; i++) {
        yield* connector.send(target.serviceUrl, target.conversationId, activities[i]!).pipe(
          Effect.mapError(toPushFailed)
        )
        progress.set(progressKey, i + 1)
      }
      progress.delete(progressKey)
    },
    Effect.tapError((failure) =>
      failure.retryable ?
        Effect.logInfo("push failed; will retry", failure.message) :
        Effect.logWarning("push rejected; not retrying", failure.message)
    )
  )

  return { push }
}
