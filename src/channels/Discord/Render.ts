/**
 * From agent output to Discord messages: the reply's text (image links appended; inline image bytes are not
 * uploaded), split under Discord's 2,000 character limit at paragraph or line boundaries, never cut. The
 * splitting and the texts for turns that cannot run are the Telegram channel's, with Discord's limit.
 */
import type { AgentResponse } from "../../domain/Message.js"
import { isBlank, replyOf, splitText } from "../shared/ReplyText.js"

export { turnErrorText } from "../shared/ReplyText.js"

/** Discord's limit on a message's content, in characters. */
export const MAX_MESSAGE_LENGTH = 2000

/** What a reply with nothing to show says. */
export const emptyReply = "(no response)"

/** The reply's text: the assistant messages (or, for an echo, the user's), then links to images. */
export const replyText = (response: AgentResponse): string => {
  const reply = replyOf(response)
  const links = reply.images.flatMap((image) => image._tag === "uri" ? [image.uri] : [])
  return [reply.text, ...links].filter((part) => part.length > 0).join("\n")
}

/** The messages a text becomes: chunks of at most 2,000 characters, or one placeholder when it is blank. */
export const messages = (text: string): ReadonlyArray<string> => {
  const chunks = splitText(text, MAX_MESSAGE_LENGTH).filter((chunk) => !isBlank(chunk))
  return chunks.length === 0 ? [emptyReply] : chunks
}

/** Message fields every send carries: mentions in agent text never ping anyone. */
export const messageBody = (content: string): Record<string, unknown> => ({
  content,
  allowed_mentions: { parse: [] }
})
