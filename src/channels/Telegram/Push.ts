/**
 * Replies from other channels (`ChannelPush`): sent to a chat id, echoes silently, failures classified for the
 * push runner (429 with its wait and 5xx retryable, 400/403 final), and a retried push skips the parts it
 * already delivered.
 */
import { Duration, Effect } from "effect"
import type { ChannelPush } from "../../core/Channel.js"
import { PushFailed } from "../../core/Channel.js"
import { replyOf } from "../shared/ReplyText.js"
import type { BotApiError } from "./BotApi.js"
import * as BotApi from "./BotApi.js"
import type { ChatTarget, Replies } from "./Replies.js"

const toPushFailed = (error: BotApiError): PushFailed => {
  const wait = BotApi.retryAfterMillis(error)
  return new PushFailed({
    reason: error._tag === "TelegramTransportError" ?
      "unreachable" :
      error.errorCode === 429 ?
      "rate_limited" :
      error.errorCode >= 500 ?
      "unavailable" :
      "rejected",
    retryable: BotApi.isRetryable(error),
    ...(wait === undefined ? {} : { retryAfter: Duration.millis(wait) }),
    message: error.message
  })
}

export const make = (replies: Replies): ChannelPush => {
  // Parts of a push already delivered, per idempotency key, so a retried push does not repeat them.
  const pushProgress = new Map<string, number>()

  const push: ChannelPush["push"] = (identity, result, pushOptions) =>
    Effect.gen(function*() {
      if (!/^-?\d+$/.test(identity.nativeId) && !identity.nativeId.startsWith("@")) {
        return yield* new PushFailed({
          reason: "rejected",
          retryable: false,
          message: `"${identity.nativeId}" is not a Telegram chat id`
        })
      }
      const thread = identity.attributes?.message_thread_id
      const target: ChatTarget = {
        chatId: identity.nativeId,
        threadId: typeof thread === "number" ? thread : undefined,
        silent: pushOptions.isEcho
      }
      const progressKey = `${pushOptions.idempotencyKey}:${pushOptions.isEcho ? "echo" : "reply"}`
      const parts = replies.replyParts(replyOf(result.response))
      const done = pushProgress.get(progressKey) ?? 0
      for (let i = done; i < parts.length; i++) {
        yield* replies.sendPart(target, parts[i]!, false).pipe(Effect.mapError(toPushFailed))
        pushProgress.set(progressKey, i + 1)
      }
      pushProgress.delete(progressKey)
    }).pipe(
      Effect.tapError((failure) =>
        failure.retryable ?
          Effect.logInfo("push failed; will retry", failure.message) :
          Effect.logWarning("push rejected by Telegram; not retrying", failure.message)
      )
    )

  return { push }
}
