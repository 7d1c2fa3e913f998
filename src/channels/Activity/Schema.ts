/**
 * The parts of a Bot Framework Activity this channel reads, decoded at the edge. Every struct tolerates (and drops)
 * fields it does not name: channels add fields freely and the protocol grows.
 */
import { Either, Schema } from "effect"

export const ChannelAccount = Schema.Struct({
  id: Schema.String,
  name: Schema.optional(Schema.String),
  aadObjectId: Schema.optional(Schema.String),
  role: Schema.optional(Schema.String)
})
export type ChannelAccount = typeof ChannelAccount.Type

export const ConversationAccount = Schema.Struct({
  id: Schema.String.pipe(Schema.minLength(1)),
  name: Schema.optional(Schema.String),
  isGroup: Schema.optional(Schema.Boolean),
  /** Teams: `personal`, `groupChat` or `channel`. */
  conversationType: Schema.optional(Schema.String),
  tenantId: Schema.optional(Schema.String)
})
export type ConversationAccount = typeof ConversationAccount.Type

/** An entity: mentions (`mention`), stream info (`streaminfo`), client info; only a few fields are read. */
export const Entity = Schema.Struct(
  {
    type: Schema.String,
    text: Schema.optional(Schema.String),
    mentioned: Schema.optional(ChannelAccount)
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type Entity = typeof Entity.Type

export const Attachment = Schema.Struct({
  contentType: Schema.String,
  contentUrl: Schema.optional(Schema.String),
  content: Schema.optional(Schema.Unknown),
  name: Schema.optional(Schema.String)
})
export type Attachment = typeof Attachment.Type

export const Activity = Schema.Struct({
  type: Schema.String.pipe(Schema.minLength(1)),
  id: Schema.optional(Schema.String),
  channelId: Schema.String.pipe(Schema.minLength(1)),
  serviceUrl: Schema.String.pipe(Schema.minLength(1)),
  from: ChannelAccount,
  conversation: ConversationAccount,
  recipient: ChannelAccount,
  text: Schema.optional(Schema.NullOr(Schema.String)),
  locale: Schema.optional(Schema.NullOr(Schema.String)),
  name: Schema.optional(Schema.NullOr(Schema.String)),
  value: Schema.optional(Schema.Unknown),
  entities: Schema.optional(Schema.NullOr(Schema.Array(Entity))),
  attachments: Schema.optional(Schema.NullOr(Schema.Array(Attachment))),
  membersAdded: Schema.optional(Schema.NullOr(Schema.Array(ChannelAccount))),
  channelData: Schema.optional(Schema.Unknown),
  replyToId: Schema.optional(Schema.NullOr(Schema.String))
})
export type Activity = typeof Activity.Type

const decodeActivityEither = Schema.decodeUnknownEither(Activity, { errors: "first" })

/** The body as an Activity, or a short reason naming the first field that is wrong. */
export const decodeActivity = (raw: unknown): Either.Either<Activity, string> =>
  Either.mapLeft(decodeActivityEither(raw), (error) => error.message.slice(0, 500))

/** `channelData.tenant.id` (Teams), else `conversation.tenantId`. */
export const tenantOf = (activity: Activity): string | undefined => {
  const data = activity.channelData
  if (typeof data === "object" && data !== null && "tenant" in data) {
    const tenant = (data as { tenant?: unknown }).tenant
    if (typeof tenant === "object" && tenant !== null && typeof (tenant as { id?: unknown }).id === "string") {
      return (tenant as { id: string }).id
    }
  }
  return activity.conversation.tenantId
}

/** Group chats and Teams channels: several people, the bot is addressed by mention. */
export const isGroup = (activity: Activity): boolean =>
  activity.conversation.isGroup === true ||
  (activity.conversation.conversationType !== undefined && activity.conversation.conversationType !== "personal")

/**
 * What a proactive message needs to reach a user again, stored when they write (the Bot Framework's
 * ConversationReference, plus whether the conversation is the 1:1 one).
 */
export const ConversationReference = Schema.Struct({
  serviceUrl: Schema.String,
  channelId: Schema.String,
  conversationId: Schema.String,
  personal: Schema.Boolean,
  tenantId: Schema.optional(Schema.String),
  bot: ChannelAccount,
  user: ChannelAccount
})
export type ConversationReference = typeof ConversationReference.Type

export const referenceOf = (activity: Activity): ConversationReference => {
  const tenantId = tenantOf(activity)
  return {
    serviceUrl: activity.serviceUrl,
    channelId: activity.channelId,
    conversationId: activity.conversation.id,
    personal: !isGroup(activity),
    ...(tenantId === undefined ? {} : { tenantId }),
    bot: activity.recipient,
    user: activity.from
  }
}

export const ReferenceJson = Schema.parseJson(ConversationReference)

/** The connector's answer to a send or a conversation creation. */
export const ResourceResponse = Schema.Struct({ id: Schema.optional(Schema.String) })
