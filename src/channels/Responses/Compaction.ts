/**
 * Compaction (`POST /responses/compact`): a conversation's history sealed into a `compaction` item whose
 * `encrypted_content` the caller feeds back as input later. The content is opaque and tamper-evident: AES-256-GCM
 * under a host key, with the caller's user isolation key as associated data, so an altered, forged or another
 * user's item does not open (and is refused with a 400), and nothing in it can be read without the key.
 *
 * The key is generated on first use and kept in the channel's durable state (the state dir in SQLite mode; per
 * process in memory mode, where compaction items do not outlive the process).
 */
import { Effect, Either, Option, Schema } from "effect"
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto"
import type { ChannelState } from "../../core/Channel.js"
import { Message } from "../../domain/Message.js"

/** Prefix of every sealed content, naming the format (a future format gets another). */
const FORMAT = "ahc1."
const IV_BYTES = 12
const TAG_BYTES = 16

const MessagesJson = Schema.parseJson(Schema.Array(Message))
const encodeMessages = Schema.encodeSync(MessagesJson)
const decodeMessages = Schema.decodeUnknownEither(MessagesJson)

export interface Sealer {
  /** The messages sealed for `user` (undefined: callers without a user isolation key). */
  readonly seal: (messages: ReadonlyArray<Message>, user: string | undefined) => string
  /** The messages, or undefined when `content` is not one this host sealed for `user` (altered, forged, foreign). */
  readonly open: (content: string, user: string | undefined) => ReadonlyArray<Message> | undefined
}

const aad = (user: string | undefined) => Buffer.from(`responses.compaction\u0000${user ?? ""}`, "utf8")

export const makeSealer = (key: Uint8Array): Sealer => ({
  seal: (messages, user) => {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv("aes-256-gcm", key, iv)
    cipher.setAAD(aad(user))
    const sealed = Buffer.concat([cipher.update(encodeMessages(messages), "utf8"), cipher.final()])
    return FORMAT + Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString("base64url")
  },
  open: (content, user) => {
    if (!content.startsWith(FORMAT)) return undefined
    const raw = Buffer.from(content.slice(FORMAT.length), "base64url")
    if (raw.length < IV_BYTES + TAG_BYTES) return undefined
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, IV_BYTES))
      decipher.setAAD(aad(user))
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
      const text = Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
        "utf8"
      )
      const decoded = decodeMessages(text)
      return Either.isRight(decoded) ? decoded.right : undefined
    } catch {
      // The authentication tag does not match: altered, forged, or sealed under another key or user.
      return undefined
    }
  }
})

/** The channel's compaction key from its state, generated (and stored) when there is none yet. */
export const loadSealer = (state: ChannelState, name: string): Effect.Effect<Sealer> =>
  Effect.gen(function*() {
    const cursor = `${name}.compaction_key`
    const stored = yield* state.getCursor(cursor)
    if (Option.isSome(stored)) {
      const key = Buffer.from(stored.value, "base64url")
      if (key.length === 32) return makeSealer(key)
      yield* Effect.logWarning("the stored compaction key is not 32 bytes; a new one is generated").pipe(
        Effect.annotateLogs({ channel: name })
      )
    }
    const key = randomBytes(32)
    yield* state.setCursor(cursor, key.toString("base64url"))
    return makeSealer(key)
  })

/** A rough token count for the compaction's usage (about four characters a token). */
export const estimateTokens = (messages: ReadonlyArray<Message>): number => {
  let chars = 0
  for (const message of messages) {
    for (const content of message.contents) {
      if (content._tag === "text" || content._tag === "reasoning") chars += content.text.length
      else if (content._tag === "function_call") chars += content.arguments.length + content.name.length
      else if (content._tag === "function_result") chars += content.result.length
    }
  }
  return Math.ceil(chars / 4)
}
