/**
 * Media a user sends (photos, documents, voice, audio, video), fetched with getFile plus a download and handed
 * to the agent as bytes, never as a file URL (those carry the bot token). A file that is too large, or whose
 * download fails, becomes a short note so the turn still runs.
 */
import { Effect } from "effect"
import type { Content } from "../../domain/Content.js"
import * as BotApi from "./BotApi.js"
import type { Message } from "./Updates.js"
import { File } from "./Updates.js"

export interface Media {
  readonly kind: string
  readonly fileId: string
  readonly fileSize: number | undefined
  readonly mediaType: string
  readonly name: string | undefined
}

/** The message's attachment: the largest photo size, or a document, voice message, audio file or video. */
export const mediaOf = (message: Message): Media | undefined => {
  const photo = message.photo?.[message.photo.length - 1]
  if (photo !== undefined) {
    return { kind: "photo", fileId: photo.file_id, fileSize: photo.file_size, mediaType: "image/jpeg", name: undefined }
  }
  const pick = [
    ["document", message.document, "application/octet-stream"],
    ["voice message", message.voice, "audio/ogg"],
    ["audio file", message.audio, "audio/mpeg"],
    ["video", message.video, "video/mp4"]
  ] as const
  for (const [kind, file, fallback] of pick) {
    if (file === undefined) continue
    return {
      kind,
      fileId: file.file_id,
      fileSize: file.file_size,
      mediaType: file.mime_type ?? fallback,
      name: file.file_name
    }
  }
  return undefined
}

/** The attachment as content for the agent: its bytes, or a note saying why they are missing. */
export const fetchMedia = (api: BotApi.BotApi, media: Media, maxMediaBytes: number): Effect.Effect<Content> => {
  const note = (reason: string): Content => ({
    _tag: "text",
    text: `[The user sent a ${media.kind} that could not be loaded: ${reason}.]`
  })
  const tooLarge = note(`it is larger than ${Math.floor(maxMediaBytes / 1024 / 1024)} MB`)
  if (media.fileSize !== undefined && media.fileSize > maxMediaBytes) return Effect.succeed(tooLarge)
  return Effect.gen(function*() {
    const file = yield* BotApi.withRetry(api.call("getFile", { file_id: media.fileId }, File))
    if (file.file_size !== undefined && file.file_size > maxMediaBytes) return tooLarge
    if (file.file_path === undefined) return note("Telegram did not provide the file")
    const bytes = yield* api.download(file.file_path, maxMediaBytes)
    const data: Content = {
      _tag: "data",
      mediaType: media.mediaType,
      data: Buffer.from(bytes).toString("base64"),
      ...(media.name === undefined ? {} : { name: media.name })
    }
    return data
  }).pipe(
    Effect.catchAll((error) =>
      Effect.as(
        Effect.logWarning("media download failed", error.message),
        error._tag === "TelegramFileTooLarge" ? tooLarge : note("the download failed")
      )
    )
  )
}
