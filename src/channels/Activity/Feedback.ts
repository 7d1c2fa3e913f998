/**
 * Feedback on the bot's replies: Teams' own thumbs (a `message/submitAction` invoke naming the rated message in
 * `replyToId`, with `actionValue.reaction` and a JSON string `actionValue.feedback`) and, elsewhere, the feedback
 * card's submit (a message whose `value` is `{ action: "feedback", reaction, responseId }`). Each is kept in the
 * state store under the response it rates (the id the channel gave the turn): per response, each person's latest
 * rating, at most `MAX_PER_RESPONSE` people, comments cut at `MAX_COMMENT`. Teams names only the rated message, so
 * the id of every reply the channel sends with feedback buttons is mapped to its response when it is sent.
 * A rating is kept only for a reply the channel sent to the same conversation (so nobody can rate, or fill the
 * store with, responses they never got). Stored feedback goes to the `onFeedback` hook and is served to admins
 * at `GET /api/feedback/:responseId`.
 */
import { Effect, Option, Schema } from "effect"
import type { ChannelContext, Route } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { EpochMillis } from "../../domain/Time.js"
import * as Time from "../../domain/Time.js"
import { makeMatcher } from "../../http/ApiKeys.js"
import { errorJson, json } from "../../http/HttpBody.js"

/** The most ratings kept per response (one per person; the oldest goes first). */
export const MAX_PER_RESPONSE = 50
/** The longest comment kept, in characters. */
export const MAX_COMMENT = 1000

export const Reaction = Schema.Literal("like", "dislike")
export type Reaction = typeof Reaction.Type

export const Feedback = Schema.Struct({
  /** The response rated: the id the channel gave the turn. */
  responseId: Schema.String,
  /** The rated message (Teams), if known. */
  activityId: Schema.optional(Schema.String),
  conversationId: Schema.String,
  /** Who rated: the Entra object id when present, else the channel's user id. */
  userId: Schema.String,
  reaction: Reaction,
  comment: Schema.optional(Schema.String),
  at: Schema.Number
})
export type Feedback = typeof Feedback.Type

const FeedbackList = Schema.parseJson(Schema.Array(Feedback))
const decodeList = Schema.decodeOption(FeedbackList)
const encodeList = Schema.encodeSync(FeedbackList)

/** What a rating says, before it is tied to a response. */
export interface Rating {
  readonly reaction: Reaction
  readonly comment: string | undefined
  /** The response named by the rating itself (the feedback card's data). */
  readonly responseId: string | undefined
  /** The rated message (Teams' `replyToId`). */
  readonly activityId: string | undefined
}

const isReaction = Schema.is(Reaction)

const commentOf = (raw: unknown): string | undefined => {
  if (typeof raw !== "string" || raw.trim().length === 0) return undefined
  // Teams sends the feedback form as a JSON string: `{"feedbackText":"..."}`.
  let text = raw
  try {
    const parsed: unknown = JSON.parse(raw)
    if (typeof parsed === "object" && parsed !== null) {
      const feedbackText = (parsed as { feedbackText?: unknown }).feedbackText
      if (typeof feedbackText !== "string" || feedbackText.trim().length === 0) return undefined
      text = feedbackText
    }
  } catch {
    // Not JSON: the comment as sent.
  }
  return text.trim().slice(0, MAX_COMMENT)
}

/** A Teams `message/submitAction` invoke's rating, or none when it is not feedback. */
export const fromInvoke = (value: unknown, replyToId: string | undefined): Option.Option<Rating> => {
  if (typeof value !== "object" || value === null) return Option.none()
  const { actionName, actionValue } = value as { actionName?: unknown; actionValue?: unknown }
  if (actionName !== "feedback" || typeof actionValue !== "object" || actionValue === null) return Option.none()
  const { feedback, reaction } = actionValue as { reaction?: unknown; feedback?: unknown }
  if (!isReaction(reaction)) return Option.none()
  return Option.some({ reaction, comment: commentOf(feedback), responseId: undefined, activityId: replyToId })
}

/** The feedback card's submit (a message `value`), or none when it is not feedback. */
export const fromCardValue = (value: unknown, replyToId: string | undefined): Option.Option<Rating> => {
  if (typeof value !== "object" || value === null) return Option.none()
  const data = value as { action?: unknown; reaction?: unknown; responseId?: unknown; comment?: unknown }
  if (data.action !== "feedback" || !isReaction(data.reaction)) return Option.none()
  return Option.some({
    reaction: data.reaction,
    comment: commentOf(data.comment),
    responseId: typeof data.responseId === "string" && data.responseId.length <= 200 ? data.responseId : undefined,
    activityId: replyToId
  })
}

export interface FeedbackStore {
  /** Remembers that the conversation got `responseId`, in the message `activityId` when known. */
  readonly replySent: (
    conversationId: string,
    activityId: string | undefined,
    responseId: string
  ) => Effect.Effect<void>
  /**
   * Stores a rating (replacing the person's earlier one) and hands it to the hook; none when it names no reply
   * sent to the conversation.
   */
  readonly record: (
    rating: Rating,
    who: { readonly conversationId: string; readonly userId: string }
  ) => Effect.Effect<Option.Option<Feedback>>
  /** The ratings of a response, oldest first. */
  readonly forResponse: (responseId: string) => Effect.Effect<ReadonlyArray<Feedback>>
}

export const make = (
  ctx: ChannelContext,
  options: { readonly name: string; readonly onFeedback?: ((feedback: Feedback) => Effect.Effect<void>) | undefined }
): Effect.Effect<FeedbackStore> =>
  Effect.gen(function*() {
    // Ratings of one response are read, changed and written back: one change at a time.
    const lock = yield* Effect.makeSemaphore(1)
    const replyKey = (conversationId: string, activityId: string) =>
      `${options.name}:reply:${conversationId}:${activityId}`
    const responseKey = (responseId: string) => `${options.name}:response:${responseId}`
    const feedbackKey = (responseId: string) => `${options.name}:feedback:${responseId}`

    const forResponse = (responseId: string) =>
      Effect.map(
        ctx.state.getCursor(feedbackKey(responseId)),
        (stored): ReadonlyArray<Feedback> =>
          Option.isNone(stored) ? [] : Option.getOrElse(decodeList(stored.value), () => [])
      )

    const record: FeedbackStore["record"] = Effect.fn("Activity.Feedback.record")(
      function*(rating, who) {
        let responseId: string | undefined
        if (rating.responseId !== undefined) {
          const sentTo = yield* ctx.state.getCursor(responseKey(rating.responseId))
          if (Option.contains(sentTo, who.conversationId)) responseId = rating.responseId
        } else if (rating.activityId !== undefined) {
          const mapped = yield* ctx.state.getCursor(replyKey(who.conversationId, rating.activityId))
          responseId = Option.getOrUndefined(mapped)
        }
        if (responseId === undefined) {
          yield* Effect.logInfo("feedback for a reply this conversation did not get; dropped")
          return Option.none()
        }
        const at: EpochMillis = yield* Time.now
        const feedback: Feedback = {
          responseId,
          ...(rating.activityId === undefined ? {} : { activityId: rating.activityId }),
          conversationId: who.conversationId,
          userId: who.userId,
          reaction: rating.reaction,
          ...(rating.comment === undefined ? {} : { comment: rating.comment }),
          at
        }
        yield* lock.withPermits(1)(
          Effect.gen(function*() {
            const earlier = yield* forResponse(feedback.responseId)
            const kept = earlier.filter((f) => f.userId !== feedback.userId).slice(-(MAX_PER_RESPONSE - 1))
            yield* ctx.state.setCursor(feedbackKey(feedback.responseId), encodeList([...kept, feedback]))
          })
        )
        yield* Effect.logInfo("feedback stored", { response: feedback.responseId, reaction: feedback.reaction })
        if (options.onFeedback !== undefined) {
          yield* options.onFeedback(feedback).pipe(
            Effect.catchAllCause((cause) => Effect.logWarning("the feedback hook failed", cause))
          )
        }
        return Option.some(feedback)
      }
    )

    const replySent: FeedbackStore["replySent"] = (conversationId, activityId, responseId) =>
      Effect.zipRight(
        ctx.state.setCursor(responseKey(responseId), conversationId),
        activityId === undefined ? Effect.void : ctx.state.setCursor(replyKey(conversationId, activityId), responseId)
      )

    return { replySent, record, forResponse }
  })

/**
 * `GET /api/feedback/:responseId`: a response's ratings, for admins (Bearer `AGENT_HOST_ADMIN_KEYS`, or
 * `AGENT_HOST_API_KEYS` when no admin keys are set, as the host's admin routes). Not mounted without such a key:
 * ratings name people and conversations.
 */
export const route = (ctx: ChannelContext, store: FeedbackStore): ReadonlyArray<Route> => {
  const keys = ctx.settings.adminKeys.length > 0 ? ctx.settings.adminKeys : ctx.settings.apiKeys
  if (keys.length === 0) return []
  const authorized = makeMatcher(keys)
  const handler = ChannelModule.handler((input) => {
    if (!authorized(input.request)) {
      return Effect.succeed(errorJson(401, "unauthorized", "an admin key is required: Authorization: Bearer <key>"))
    }
    const responseId = input.params.responseId ?? ""
    if (responseId.length === 0 || responseId.length > 200) {
      return Effect.succeed(errorJson(400, "invalid_request", "responseId must be 1 to 200 characters"))
    }
    return Effect.map(store.forResponse(responseId), (feedback) =>
      json({
        response_id: responseId,
        feedback: feedback.map((f) => ({
          reaction: f.reaction,
          comment: f.comment ?? null,
          user_id: f.userId,
          conversation_id: f.conversationId,
          activity_id: f.activityId ?? null,
          created_at: f.at
        }))
      }))
  })
  return [{ method: "GET", path: "/api/feedback/:responseId", handler }]
}
