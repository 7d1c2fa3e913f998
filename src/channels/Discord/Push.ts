/**
 * Replies from other channels (`ChannelPush`) through the bot token. The identity's native id names the
 * destination: `channel:<id>` a text channel, `<user id>` (or `user:<id>`) a direct message, whose DM channel is
 * opened once (`POST /users/@me/channels`) and remembered. Rate limits are honoured by the client (a short wait,
 * then the 429 with its `retry_after` goes to the push runner); each part carries a nonce derived from the
 * idempotency key (`enforce_nonce`), and parts already delivered are skipped on a retry.
 */
import { Duration, Effect, Option } from "effect"
import * as Crypto from "node:crypto"
import type { ChannelPush, ChannelState } from "../../core/Channel.js"
import { PushFailed } from "../../core/Channel.js"
import type { ApiError } from "./Api.js"
import * as Api from "./Api.js"
import { messageBody, messages, replyText } from "./Render.js"

export type Destination =
  | { readonly _tag: "channel"; readonly id: string }
  | { readonly _tag: "user"; readonly id: string }

/** Where a native id sends to, or undefined when it is not a Discord destination. */
export const destinationOf = (nativeId: string): Destination | undefined => {
  const channel = /^channel:(\d{1,20})$/.exec(nativeId)
  if (channel !== null) return { _tag: "channel", id: channel[1]! }
  const user = /^(?:user:)?(\d{1,20})$/.exec(nativeId)
  return user === null ? undefined : { _tag: "user", id: user[1]! }
}

const toPushFailed = (error: ApiError): PushFailed =>
  new PushFailed({
    reason: error._tag === "DiscordTransportError" ?
      "unreachable" :
      error.status === 429 ?
      "rate_limited" :
      error.status >= 500 ?
      "unavailable" :
      "rejected",
    retryable: Api.isRetryable(error),
    ...(error._tag === "DiscordApiError" && error.retryAfterMillis !== undefined ?
      { retryAfter: Duration.millis(Math.ceil(error.retryAfterMillis)) } :
      {}),
    message: error.message
  })

// Discord's SUPPRESS_NOTIFICATIONS message flag: an echoed user turn should not ping.
const SUPPRESS_NOTIFICATIONS = 1 << 12
const maxProgress = 1_000

/** Discord dedupes a nonce (at most 25 characters) for a few minutes when `enforce_nonce` is set. */
const nonceOf = (key: string, part: number) =>
  Crypto.createHash("sha256").update(`${key}:${part}`).digest("base64url").slice(0, 25)

export interface Options {
  /** The longest a push waits inline for a rate limit before handing the 429 to the runner (default 10 s). */
  readonly maxWait?: Duration.DurationInput
}

export const make = (api: Api.Api, state: ChannelState, options: Options = {}): ChannelPush => {
  const maxWait = options.maxWait ?? "10 seconds"
  // Parts of a push already delivered, per idempotency key, so a retried push does not repeat them (bounded:
  // the oldest entries go first; the nonce still guards a retry soon after).
  const progress = new Map<string, number>()

  const dmChannel = (userId: string) =>
    Effect.gen(function*() {
      const cursor = `discord:dm:${userId}`
      const known = yield* state.getCursor(cursor)
      if (Option.isSome(known)) return known.value
      const opened = yield* api.request("POST", "/users/@me/channels", {
        auth: true,
        body: { recipient_id: userId }
      })
      const id = opened !== null && typeof opened === "object" && "id" in opened ? String(opened.id) : ""
      if (!/^\d{1,20}$/.test(id)) {
        return yield* new PushFailed({
          reason: "unavailable",
          retryable: true,
          message: "Discord answered the DM channel request without a channel id"
        })
      }
      yield* state.setCursor(cursor, id)
      return id
    })

  const push: ChannelPush["push"] = Effect.fn("Discord.Push.push")(
    function*(identity, result, pushOptions) {
      const destination = destinationOf(identity.nativeId)
      if (destination === undefined) {
        return yield* new PushFailed({
          reason: "rejected",
          retryable: false,
          message: `"${identity.nativeId}" is not a Discord destination (a user id, or channel:<channel id>)`
        })
      }
      const channelId = destination._tag === "channel" ?
        destination.id :
        yield* dmChannel(destination.id).pipe(Effect.mapError((e) => e._tag === "PushFailed" ? e : toPushFailed(e)))
      const key = `${pushOptions.idempotencyKey}:${pushOptions.isEcho ? "echo" : "reply"}`
      const parts = messages(replyText(result.response))
      for (let i = progress.get(key) ?? 0; i < parts.length; i++) {
        yield* api.request("POST", `/channels/${channelId}/messages`, {
          auth: true,
          body: {
            ...messageBody(parts[i]!),
            nonce: nonceOf(key, i),
            enforce_nonce: true,
            ...(pushOptions.isEcho ? { flags: SUPPRESS_NOTIFICATIONS } : {})
          },
          maxWait
        }).pipe(Effect.mapError(toPushFailed))
        progress.delete(key)
        progress.set(key, i + 1)
        if (progress.size > maxProgress) progress.delete(progress.keys().next().value!)
      }
      progress.delete(key)
    },
    Effect.tapError((failure) =>
      failure.retryable ?
        Effect.logInfo("push failed; will retry", failure.message) :
        Effect.logWarning("push rejected by Discord; not retrying", failure.message)
    )
  )

  return { push }
}
