/**
 * Files and images a user sends, for the turn's input: each attachment is downloaded and handed to the agent as
 * bytes (`data` content with its media type and name). What is downloaded, and from where, is bounded, because the
 * URLs come from the activity:
 * - only from hosts on an allowlist (`ACTIVITY_ATTACHMENT_HOSTS`; default the service URLs and `*.sharepoint.com`,
 *   where Teams keeps files), over https (or an allowlisted origin); redirects are followed by hand, at most
 *   three, each checked against the same list, so an allowed host cannot send the download elsewhere;
 * - the bot's connector token only to the activity's own service URL (Teams' inline images live there);
 * - at most `maxBytes` each (checked on the declared length and while reading) and `maxCount` per message.
 * Teams' own parts are understood: `application/vnd.microsoft.teams.file.download.info` (its `downloadUrl` is
 * pre-authorized) and the `text/html` copy of the message (skipped). `data:` URLs (base64) are decoded in place.
 * Whatever cannot be used becomes a short reason, which the channel tells the user.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import type { Duration } from "effect"
import { Chunk, Effect, Schema, Stream } from "effect"
import type { DataContent } from "../../domain/Content.js"
import type { Bytes } from "../../domain/Size.js"
import type { Attachment } from "./Schema.js"
import type { Tokens } from "./Token.js"

/** Where Teams keeps files users send (the file consent flow's and the 1:1 chat's download URLs). */
export const defaultFileHosts: ReadonlyArray<string> = ["*.sharepoint.com"]

export const TEAMS_FILE = "application/vnd.microsoft.teams.file.download.info"

/** One attachment could not be used: `reason` is for the user. */
export class AttachmentUnusable extends Schema.TaggedError<AttachmentUnusable>()("AttachmentUnusable", {
  name: Schema.String,
  reason: Schema.String
}) {}

export interface Options {
  /** Whether a URL may be downloaded (see `Auth.serviceUrlAllowed` for the list's forms). */
  readonly allowed: (url: string) => boolean
  readonly maxBytes: Bytes
  readonly maxCount: number
  readonly tokens: Tokens
  readonly timeout?: Duration.DurationInput
}

export interface Loaded {
  readonly contents: ReadonlyArray<DataContent>
  readonly unusable: ReadonlyArray<AttachmentUnusable>
}

export interface Attachments {
  /** The activity's attachments as content; `serviceUrl` is the activity's (the only place the token goes). */
  readonly load: (attachments: ReadonlyArray<Attachment>, serviceUrl: string) => Effect.Effect<Loaded>
}

const MAX_REDIRECTS = 3

// Teams names a file's type by extension only.
const mediaTypes: Readonly<Record<string, string>> = {
  pdf: "application/pdf",
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  json: "application/json",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  docx: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  pptx: "application/vnd.openxmlformats-officedocument.presentationml.presentation"
}

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

const sizeText = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${Math.floor(bytes / 1024 / 1024)} MB` : `${Math.max(1, Math.floor(bytes / 1024))} KB`

/** A concrete media type: the declared one, else the server's, else a generic one. */
const mediaTypeOf = (declared: string, served: string | undefined): string => {
  const clean = (type: string | undefined) => type?.split(";")[0]?.trim().toLowerCase()
  const first = clean(declared)
  if (first !== undefined && /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(first)) return first
  const second = clean(served)
  if (second !== undefined && /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(second)) return second
  return "application/octet-stream"
}

export const make = (options: Options): Effect.Effect<Attachments, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client): Attachments => {
    const timeout = options.timeout ?? "30 seconds"
    const tooLarge = (name: string) =>
      new AttachmentUnusable({ name, reason: `it is larger than ${sizeText(options.maxBytes)}` })

    const readBounded = (name: string, response: HttpClientResponse.HttpClientResponse) => {
      const declared = Number(response.headers["content-length"])
      if (Number.isFinite(declared) && declared > options.maxBytes) return Effect.fail(tooLarge(name))
      return response.stream.pipe(
        Stream.mapError(() => new AttachmentUnusable({ name, reason: "the download failed" })),
        Stream.mapAccumEffect(0, (total, chunk) => {
          const next = total + chunk.byteLength
          return next > options.maxBytes ?
            Effect.fail(tooLarge(name)) :
            Effect.succeed([next, chunk] as const)
        }),
        Stream.runCollect,
        Effect.map((chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)))
      )
    }

    // Redirects by hand (`redirect: "manual"`), so each hop is checked; the token never leaves its origin.
    const download = (
      name: string,
      url: string,
      token: string | undefined,
      hops: number
    ): Effect.Effect<{ readonly bytes: Buffer; readonly servedType: string | undefined }, AttachmentUnusable> =>
      Effect.gen(function*() {
        const request = token === undefined ?
          HttpClientRequest.get(url) :
          HttpClientRequest.get(url).pipe(HttpClientRequest.bearerToken(token))
        const response = yield* client.execute(request).pipe(
          Effect.provideService(FetchHttpClient.RequestInit, { redirect: "manual" }),
          Effect.mapError(() => new AttachmentUnusable({ name, reason: "the download failed" }))
        )
        const location = response.headers["location"]
        if (response.status >= 300 && response.status < 400 && location !== undefined) {
          const next = new URL(location, url).href
          if (hops >= MAX_REDIRECTS || !options.allowed(next)) {
            return yield* new AttachmentUnusable({ name, reason: "its download goes to a place I don't fetch from" })
          }
          return yield* download(name, next, originOf(next) === originOf(url) ? token : undefined, hops + 1)
        }
        if (response.status < 200 || response.status >= 300) {
          return yield* new AttachmentUnusable({ name, reason: `the download failed (HTTP ${response.status})` })
        }
        const bytes = yield* readBounded(name, response)
        return { bytes, servedType: response.headers["content-type"] }
      })

    const fromDataUrl = (name: string, declared: string, url: string) => {
      const match = /^data:([^;,]*)((?:;[^;,]*)*);base64,(.*)$/s.exec(url)
      if (match === null) return Effect.fail(new AttachmentUnusable({ name, reason: "it is not base64 data" }))
      const data = match[3]!.replace(/\s+/g, "")
      if (Math.floor(data.length * 3 / 4) > options.maxBytes) return Effect.fail(tooLarge(name))
      return Effect.succeed<DataContent>({
        _tag: "data",
        mediaType: mediaTypeOf(declared, match[1]),
        data: Buffer.from(data, "base64").toString("base64"),
        name
      })
    }

    const loadOne = (
      attachment: Attachment,
      serviceUrl: string
    ): Effect.Effect<DataContent | undefined, AttachmentUnusable> =>
      Effect.gen(function*() {
        const contentType = attachment.contentType.toLowerCase()
        // Teams sends the message's own text again as HTML: nothing to add.
        if (contentType === "text/html") return undefined
        let url = attachment.contentUrl
        let declared = attachment.contentType
        let name = attachment.name ?? attachment.contentType
        if (contentType === TEAMS_FILE) {
          const content = attachment.content as { downloadUrl?: unknown; fileType?: unknown } | undefined
          url = typeof content?.downloadUrl === "string" ? content.downloadUrl : undefined
          const fileType = typeof content?.fileType === "string" ? content.fileType.toLowerCase() : ""
          declared = mediaTypes[fileType] ?? "application/octet-stream"
          name = attachment.name ?? `file.${fileType}`
        }
        if (url === undefined) {
          return yield* new AttachmentUnusable({
            name,
            reason: `I can't read this kind of attachment (${attachment.contentType.slice(0, 80)})`
          })
        }
        if (url.startsWith("data:")) return yield* fromDataUrl(name, declared, url)
        if (!options.allowed(url)) {
          return yield* new AttachmentUnusable({ name, reason: "it is stored somewhere I don't fetch from" })
        }
        const sameOrigin = originOf(url) !== undefined && originOf(url) === originOf(serviceUrl)
        const token = sameOrigin && contentType !== TEAMS_FILE ?
          yield* options.tokens.get.pipe(
            Effect.mapError(() => new AttachmentUnusable({ name, reason: "the download failed" }))
          ) :
          undefined
        const { bytes, servedType } = yield* download(name, url, token, 0).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new AttachmentUnusable({ name, reason: "the download took too long" })
          })
        )
        return { _tag: "data", mediaType: mediaTypeOf(declared, servedType), data: bytes.toString("base64"), name }
      })

    const load: Attachments["load"] = Effect.fn("Activity.Attachments.load")(
      function*(attachments, serviceUrl) {
        const usable = attachments.filter((a) => a.contentType.toLowerCase() !== "text/html")
        const unusable: Array<AttachmentUnusable> = usable.slice(options.maxCount).map((a) =>
          new AttachmentUnusable({
            name: a.name ?? a.contentType,
            reason: `I take at most ${options.maxCount} attachments per message`
          })
        )
        const results = yield* Effect.forEach(
          usable.slice(0, options.maxCount),
          (attachment) => Effect.either(loadOne(attachment, serviceUrl)),
          { concurrency: 2 }
        )
        const contents: Array<DataContent> = []
        for (const result of results) {
          if (result._tag === "Left") unusable.push(result.left)
          else if (result.right !== undefined) contents.push(result.right)
        }
        if (unusable.length > 0) {
          yield* Effect.logInfo("attachments not used", unusable.map((u) => u.reason).join("; "))
        }
        return { contents, unusable }
      }
    )

    return { load }
  })

/** What the user is told about attachments that could not be used. */
export const unusableText = (unusable: ReadonlyArray<AttachmentUnusable>): string =>
  unusable.length === 1 ?
    `I couldn't use the attachment "${unusable[0]!.name.slice(0, 100)}": ${unusable[0]!.reason}.` :
    `I couldn't use ${unusable.length} attachments: ${
      unusable.map((u) => `"${u.name.slice(0, 100)}" (${u.reason})`).join(", ")
    }.`
