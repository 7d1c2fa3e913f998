/**
 * The Bot API objects the channel reads, decoded at the edge (webhook body, getUpdates result). Only the fields
 * the channel uses are declared; everything else Telegram sends is ignored, so new Bot API fields never break
 * decoding.
 */
import { Schema } from "effect"

export const User = Schema.Struct({
  id: Schema.Number,
  is_bot: Schema.optional(Schema.Boolean),
  first_name: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String)
})
export type User = typeof User.Type

export const Chat = Schema.Struct({
  id: Schema.Number,
  /** "private", "group", "supergroup" or "channel". */
  type: Schema.String,
  title: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String),
  is_forum: Schema.optional(Schema.Boolean)
})
export type Chat = typeof Chat.Type

export const PhotoSize = Schema.Struct({
  file_id: Schema.String,
  width: Schema.optional(Schema.Number),
  height: Schema.optional(Schema.Number),
  file_size: Schema.optional(Schema.Number)
})
export type PhotoSize = typeof PhotoSize.Type

/** The common shape of Document, Voice, Audio and Video. */
export const FileAttachment = Schema.Struct({
  file_id: Schema.String,
  file_size: Schema.optional(Schema.Number),
  mime_type: Schema.optional(Schema.String),
  file_name: Schema.optional(Schema.String)
})
export type FileAttachment = typeof FileAttachment.Type

export const MessageEntity = Schema.Struct({
  type: Schema.String,
  offset: Schema.Number,
  length: Schema.Number,
  user: Schema.optional(User)
})
export type MessageEntity = typeof MessageEntity.Type

/** The replied-to message: only who wrote it matters (was it the bot?). */
export const RepliedMessage = Schema.Struct({
  message_id: Schema.Number,
  from: Schema.optional(User)
})

export const Message = Schema.Struct({
  message_id: Schema.Number,
  message_thread_id: Schema.optional(Schema.Number),
  is_topic_message: Schema.optional(Schema.Boolean),
  from: Schema.optional(User),
  chat: Chat,
  text: Schema.optional(Schema.String),
  caption: Schema.optional(Schema.String),
  entities: Schema.optional(Schema.Array(MessageEntity)),
  caption_entities: Schema.optional(Schema.Array(MessageEntity)),
  photo: Schema.optional(Schema.Array(PhotoSize)),
  document: Schema.optional(FileAttachment),
  voice: Schema.optional(FileAttachment),
  audio: Schema.optional(FileAttachment),
  video: Schema.optional(FileAttachment),
  reply_to_message: Schema.optional(RepliedMessage)
})
export type Message = typeof Message.Type

/** `message` may be an inaccessible message (date 0); chat and id are always present. */
export const CallbackQuery = Schema.Struct({
  id: Schema.String,
  from: User,
  message: Schema.optional(Schema.Struct({
    message_id: Schema.Number,
    message_thread_id: Schema.optional(Schema.Number),
    is_topic_message: Schema.optional(Schema.Boolean),
    chat: Chat
  })),
  data: Schema.optional(Schema.String)
})
export type CallbackQuery = typeof CallbackQuery.Type

export const Update = Schema.Struct({
  update_id: Schema.Number.pipe(Schema.int(), Schema.nonNegative()),
  message: Schema.optional(Message),
  edited_message: Schema.optional(Message),
  callback_query: Schema.optional(CallbackQuery)
})
export type Update = typeof Update.Type

export const decodeUpdate = Schema.decodeUnknownEither(Update, { errors: "first" })

/** The update kinds the channel asks Telegram for (webhook and polling). */
export const allowedUpdates: ReadonlyArray<string> = ["message", "edited_message", "callback_query"]

/** getFile's result. */
export const File = Schema.Struct({
  file_id: Schema.String,
  file_size: Schema.optional(Schema.Number),
  file_path: Schema.optional(Schema.String)
})
export type File = typeof File.Type

/** The part of a sent message the channel needs back (to edit it while streaming). */
export const SentMessage = Schema.Struct({ message_id: Schema.Number })
export type SentMessage = typeof SentMessage.Type
