/**
 * Answering an interaction after the deferred response: the first message edits the deferred one
 * (`PATCH /webhooks/{app}/{token}/messages/@original`), the rest are follow-ups (`POST /webhooks/{app}/{token}`).
 * The interaction token lives 15 minutes; a reply ready later (or refused because the token is gone) is posted
 * to the channel with the bot token instead, and when there is no bot token the loss is logged, never silent.
 * While a reply streams, `progress` edits the deferred message with the text so far: best effort, it never waits
 * for a rate limit (an edit the limits do not allow now is skipped; the next one or the final reply supersedes it).
 */
import { Clock, Duration, Effect, Ref, Schedule } from "effect"
import { isBlank } from "../shared/ReplyText.js"
import type { ApiError } from "./Api.js"
import * as Api from "./Api.js"
import { messageBody, messages } from "./Render.js"

/** How long Discord accepts an interaction's token. */
export const tokenLifetime: Duration.Duration = Duration.minutes(15)

/** An interaction being answered. */
export interface InteractionTarget {
  readonly applicationId: string
  readonly interactionId: string
  /** Secret: never logged. */
  readonly token: string
  readonly channelId: string
  /** When the interaction arrived (epoch millis, from Clock). */
  readonly receivedAt: number
}

/** Sends messages for one interaction: the first edits the deferred response, later ones follow up. */
export interface Conversation {
  readonly send: (text: string) => Effect.Effect<void>
  /**
   * Shows the reply so far in the deferred response (its first 2,000 characters), until `send` is first called.
   * Uninterruptible, so an edit in flight always lands before the final one.
   */
  readonly progress: (text: string) => Effect.Effect<void>
}

export interface Replies {
  readonly conversation: (target: InteractionTarget) => Effect.Effect<Conversation>
  /** A message in a channel with the bot token (pushes and late replies). */
  readonly channelMessage: (
    channelId: string,
    content: string,
    extra?: Record<string, unknown>
  ) => Effect.Effect<unknown, ApiError>
}

export interface Options {
  /** Token lifetime minus this is when the channel stops using the token (default 30 s, for clock skew). */
  readonly tokenMargin?: Duration.DurationInput
}

// A PATCH can reach Discord before it has processed the deferred response: "Unknown Webhook" is retried briefly.
const earlyRetry = Schedule.spaced("500 millis").pipe(Schedule.intersect(Schedule.recurs(4)))
// Server errors and transport failures, a few times; 429s are waited out inside the client.
const serverRetry = Schedule.exponential("500 millis", 2).pipe(Schedule.intersect(Schedule.recurs(2)))

export const make = (api: Api.Api, options: Options = {}): Replies => {
  const usable = Duration.toMillis(tokenLifetime) - Duration.toMillis(options.tokenMargin ?? "30 seconds")

  const channelMessage = (channelId: string, content: string, extra: Record<string, unknown> = {}) =>
    api.request("POST", `/channels/${channelId}/messages`, {
      auth: true,
      body: { ...messageBody(content), ...extra },
      maxWait: "1 minute"
    })

  const webhook = (
    target: InteractionTarget,
    method: "PATCH" | "POST",
    content: string
  ): Effect.Effect<unknown, ApiError> =>
    api.request(
      method,
      method === "PATCH" ?
        `/webhooks/${target.applicationId}/${target.token}/messages/@original` :
        `/webhooks/${target.applicationId}/${target.token}`,
      { body: messageBody(content), maxWait: "1 minute" }
    ).pipe(
      Effect.retry({
        schedule: earlyRetry,
        while: (error) => error._tag === "DiscordApiError" && error.code === 10015
      }),
      Effect.retry({
        schedule: serverRetry,
        while: (error) => Api.isRetryable(error) && !(error._tag === "DiscordApiError" && error.status === 429)
      })
    )

  const conversation = (target: InteractionTarget) =>
    Effect.map(Ref.make({ edited: false, tokenGone: false, shown: "" }), (state): Conversation => {
      const viaChannel = (parts: ReadonlyArray<string>) =>
        api.hasBotToken ?
          Effect.forEach(parts, (part) => channelMessage(target.channelId, part), { discard: true }).pipe(
            Effect.catchAll((error) =>
              Effect.logWarning("reply lost: the channel message failed", {
                interaction: target.interactionId,
                error: error.message
              })
            )
          ) :
          Effect.logWarning(
            "reply lost: the interaction token expired and no bot token (DISCORD_BOT_TOKEN) is configured",
            { interaction: target.interactionId, parts: parts.length }
          )

      const send = (text: string): Effect.Effect<void> =>
        Effect.gen(function*() {
          const parts = messages(text)
          const now = yield* Clock.currentTimeMillis
          const current = yield* Ref.get(state)
          if (current.tokenGone || now - target.receivedAt >= usable) return yield* viaChannel(parts)
          for (let i = 0; i < parts.length; i++) {
            const edit = !(yield* Ref.get(state)).edited
            const sent = yield* Effect.either(webhook(target, edit ? "PATCH" : "POST", parts[i]!))
            if (sent._tag === "Right") {
              if (edit) yield* Ref.update(state, (s) => ({ ...s, edited: true }))
              continue
            }
            if (Api.isTokenInvalid(sent.left)) {
              yield* Ref.update(state, (s) => ({ ...s, tokenGone: true }))
              yield* Effect.logInfo("interaction token no longer accepted; replying in the channel", {
                interaction: target.interactionId
              })
              return yield* viaChannel(parts.slice(i))
            }
            return yield* Effect.logWarning("reply failed", {
              interaction: target.interactionId,
              error: sent.left.message
            })
          }
        })

      const progress = (text: string): Effect.Effect<void> =>
        Effect.gen(function*() {
          const current = yield* Ref.get(state)
          const now = yield* Clock.currentTimeMillis
          if (current.edited || current.tokenGone || now - target.receivedAt >= usable) return
          const display = messages(text)[0]!
          if (isBlank(text) || display === current.shown) return
          // No wait budget: an edit the rate limits do not allow now fails at once instead of delaying the next.
          const sent = yield* Effect.either(api.request(
            "PATCH",
            `/webhooks/${target.applicationId}/${target.token}/messages/@original`,
            { body: messageBody(display), maxWait: Duration.zero }
          ))
          if (sent._tag === "Right") return yield* Ref.update(state, (s) => ({ ...s, shown: display }))
          // Not fatal: `send` decides what a gone token means for the reply.
          yield* Effect.logDebug("streaming edit skipped", {
            interaction: target.interactionId,
            error: sent.left.message
          })
        }).pipe(Effect.uninterruptible)

      return { send, progress }
    })

  return { conversation, channelMessage }
}
