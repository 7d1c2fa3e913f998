/**
 * From an authenticated activity to what the conversation gets: a turn for a message (the bot's mention stripped
 * in group chats), a welcome for members added, feedback stored, and everything else acknowledged and ignored.
 * Each turn gets a response id of its own (the turn's `responseId`), which ratings of its reply are stored under.
 */
import type { Either } from "effect"
import { Effect } from "effect"
import { Schema } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { Content } from "../../domain/Content.js"
import type { InvalidIsolationKey } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import type { ChannelName, IsolationKey } from "../../domain/Ids.js"
import { isolationKey as checkIsolationKey, issueId } from "../../domain/Ids.js"
import type { Attachments } from "./Attachments.js"
import { unusableText } from "./Attachments.js"
import * as Feedback from "./Feedback.js"
import type { Linking } from "./Linking.js"
import type { Replies, Target } from "./Replies.js"
import type { Activity } from "./Schema.js"
import { isGroup, ReferenceJson, referenceOf, tenantOf } from "./Schema.js"

/** The session key of a conversation. */
export const isolationKey = (
  conversationId: string,
  prefix = "activity"
): Either.Either<IsolationKey, InvalidIsolationKey> => checkIsolationKey(`${prefix}:${conversationId}`)

/** The state key under which a user's conversation reference is kept. */
export const referenceKey = (prefix: string, userId: string) => `${prefix}:ref:${userId}`

/** Who wrote: the Entra object id when the channel gives one (stable across conversations), else the channel id. */
export const userIdOf = (activity: Activity): string => activity.from.aadObjectId ?? activity.from.id

export const targetOf = (activity: Activity): Target => ({
  serviceUrl: activity.serviceUrl,
  conversationId: activity.conversation.id,
  replyToId: activity.id,
  teams: activity.channelId === "msteams",
  personal: !isGroup(activity)
})

/** The text without the bot's `<at>` mentions (group chats address the bot that way). */
export const stripMentions = (activity: Activity): string => {
  let text = activity.text ?? ""
  for (const entity of activity.entities ?? []) {
    if (entity.type !== "mention" || entity.mentioned?.id !== activity.recipient.id) continue
    if (entity.text !== undefined && entity.text.length > 0) text = text.split(entity.text).join(" ")
  }
  return text.replace(/\s{2,}/g, " ").trim()
}

const encodeReference = Schema.encodeSync(ReferenceJson)
const decodeReference = Schema.decodeOption(ReferenceJson)

export interface Options {
  readonly name: ChannelName
  readonly welcomeText: string
  readonly feedback: Feedback.FeedbackStore
  readonly attachments: Attachments
  /** `/link`, `/unlink`, `/whoami` and the sign-in card. */
  readonly linking: Linking
}

export interface Inbound {
  /** Handles a message or conversation update (in the conversation's order). */
  readonly handle: (activity: Activity, raw: unknown, key: IsolationKey) => Effect.Effect<void>
  /** Keeps the sender's conversation reference, for pushes. */
  readonly remember: (activity: Activity) => Effect.Effect<void>
}

export const make = (ctx: ChannelContext, replies: Replies, options: Options): Inbound => {
  const name = options.name

  const identityOf = (activity: Activity): ChannelIdentity => {
    const tenant = tenantOf(activity)
    return {
      channel: name,
      nativeId: userIdOf(activity),
      attributes: {
        // The channel account id (not `user_id`: the identity is the person already, never a group).
        from_id: activity.from.id,
        conversation_id: activity.conversation.id,
        channel_id: activity.channelId,
        ...(activity.from.name === undefined ? {} : {
          name: activity.from.name,
          // How the sign-in confirmation page names the person (the ids mean nothing to them).
          display_name: `${activity.from.name} (${activity.channelId === "msteams" ? "Teams" : activity.channelId})`
        }),
        ...(tenant === undefined ? {} : { tenant_id: tenant })
      }
    }
  }

  // A 1:1 reference replaces any other; a group reference is kept only until a 1:1 one exists, so pushes go to
  // the user's own chat when there is one (and otherwise open it).
  const remember = (activity: Activity) =>
    Effect.gen(function*() {
      const key = referenceKey(name, userIdOf(activity))
      const reference = referenceOf(activity)
      if (!reference.personal) {
        const stored = yield* ctx.state.getCursor(key)
        if (stored._tag === "Some") {
          const previous = decodeReference(stored.value)
          if (previous._tag === "Some" && previous.value.personal) return
        }
      }
      yield* ctx.state.setCursor(key, encodeReference(reference))
    })

  const handleMessage = (activity: Activity, raw: unknown, key: IsolationKey) =>
    Effect.gen(function*() {
      const target = targetOf(activity)
      const rating = Feedback.fromCardValue(activity.value, activity.replyToId ?? undefined)
      if (rating._tag === "Some") {
        yield* options.feedback.record(rating.value, {
          conversationId: activity.conversation.id,
          userId: userIdOf(activity)
        })
        return
      }
      const group = isGroup(activity)
      const text = group ? stripMentions(activity) : (activity.text ?? "").trim()
      const command = options.linking.commandOf(text)
      if (command !== undefined) {
        yield* remember(activity)
        return yield* options.linking.run(command, activity, identityOf(activity))
      }
      // A card's Action.Submit arrives as a message with `value` and no text: the agent gets the data as JSON.
      const input = text.length > 0 ?
        text :
        activity.value !== undefined ?
        JSON.stringify(activity.value).slice(0, 8000) :
        ""
      const attachments = activity.attachments ?? []
      const loaded = attachments.length === 0 ?
        { contents: [], unusable: [] } :
        yield* options.attachments.load(attachments, activity.serviceUrl)
      if (loaded.unusable.length > 0) yield* replies.say(target, unusableText(loaded.unusable))
      const contents: Array<Content> = input.length > 0 ? [{ _tag: "text", text: input }, ...loaded.contents] : [
        ...loaded.contents
      ]
      if (contents.length === 0) return
      yield* remember(activity)
      const responseId = yield* issueId("activity_")
      const request: ChannelRequest = {
        channel: name,
        operation: "message.create",
        input: [{
          role: "user",
          contents,
          ...(activity.from.name === undefined ? {} : { authorName: activity.from.name })
        }],
        session: { isolationKey: key },
        identity: identityOf(activity),
        attributes: {
          responseId,
          activity_id: activity.id,
          conversation_id: activity.conversation.id,
          channel_id: activity.channelId
        },
        stream: false
      }
      yield* replies.answer(request, raw, target, (error) => options.linking.challenge(activity, target, error))
    })

  const handleConversationUpdate = (activity: Activity) => {
    const added = (activity.membersAdded ?? []).filter((member) => member.id !== activity.recipient.id)
    if (added.length === 0 || options.welcomeText.length === 0) return Effect.void
    return replies.say({ ...targetOf(activity), replyToId: undefined }, options.welcomeText)
  }

  const handle = (activity: Activity, raw: unknown, key: IsolationKey): Effect.Effect<void> => {
    switch (activity.type) {
      case "message":
        return handleMessage(activity, raw, key)
      case "conversationUpdate":
        return handleConversationUpdate(activity)
      default:
        return Effect.void
    }
  }

  return { handle, remember }
}

/** Whether `raw` can be decoded as a stored reference. */
export const decodeStoredReference = (raw: string) => decodeReference(raw)
