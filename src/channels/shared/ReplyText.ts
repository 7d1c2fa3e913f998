/**
 * From agent output to chat messages, for the chat channels (Telegram, Activity/Teams, Discord): the reply's text
 * and images, text split under a platform's length limit at paragraph or line boundaries (nothing is dropped),
 * and the short texts a chat gets when a turn cannot run. Shared here so no channel imports another.
 */
import type { DataContent, UriContent } from "../../domain/Content.js"
import type { TurnError } from "../../domain/Errors.js"
import type { AgentResponse } from "../../domain/Message.js"

/** Telegram's limit on a message's text, in UTF-16 code units. */
export const MAX_MESSAGE_LENGTH = 4096

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff

const cutAt = (text: string, limit: number): number => {
  const window = text.slice(0, limit)
  // Prefer a paragraph break, then a line break, then a space, in the second half of the window so chunks stay
  // reasonably full; the separator stays with the chunk before it, so joining the chunks gives the text back.
  for (const separator of ["\n\n", "\n", " "]) {
    const at = window.lastIndexOf(separator)
    if (at >= limit / 2) return at + separator.length
  }
  // No boundary: a hard cut, never between the halves of a surrogate pair.
  return isHighSurrogate(text.charCodeAt(limit - 1)) ? limit - 1 : limit
}

/** Splits `text` into chunks of at most `limit` code units; `chunks.join("") === text`. */
export const splitText = (text: string, limit = MAX_MESSAGE_LENGTH): Array<string> => {
  const chunks: Array<string> = []
  let rest = text
  while (rest.length > limit) {
    const at = cutAt(rest, limit)
    chunks.push(rest.slice(0, at))
    rest = rest.slice(at)
  }
  if (rest.length > 0) chunks.push(rest)
  return chunks
}

/** Telegram rejects whitespace-only texts. */
export const isBlank = (text: string) => text.trim().length === 0

export interface Reply {
  readonly text: string
  readonly images: ReadonlyArray<DataContent | UriContent>
}

const isImage = (part: { readonly _tag: string; readonly mediaType?: string }): part is DataContent | UriContent =>
  (part._tag === "data" || part._tag === "uri") && part.mediaType !== undefined && part.mediaType.startsWith("image/")

/**
 * The reply to render: the assistant messages' text and images. A response with no assistant message (an echoed
 * user turn pushed from another channel) renders its user messages instead.
 */
export const replyOf = (response: AgentResponse): Reply => {
  const assistant = response.messages.filter((m) => m.role === "assistant")
  const messages = assistant.length > 0 ? assistant : response.messages.filter((m) => m.role === "user")
  const texts: Array<string> = []
  const images: Array<DataContent | UriContent> = []
  for (const message of messages) {
    let text = ""
    for (const part of message.contents) {
      if (part._tag === "text") text += part.text
      else if (isImage(part)) images.push(part)
    }
    if (text.length > 0) texts.push(text)
  }
  return { text: texts.join("\n\n"), images }
}

/** What the chat is told when a turn cannot run. Only messages meant for the user are shown, never details. */
export const turnErrorText = (error: TurnError): string => {
  switch (error._tag) {
    case "AccessDenied":
      return error.message
    case "LinkRequiredError":
      return error.url === undefined ? error.message : `${error.message}\n${error.url}`
    case "SessionBusy":
      return "I'm still working on your previous message. Please wait a moment."
    case "SessionCapacityExceeded":
      return "I'm busy right now. Please try again in a minute."
    case "MailboxFull":
      return "I'm busy with your earlier messages. Please try again in a moment."
    case "PushQueueFull":
      return "I can't deliver replies to your other chats right now. Please try again in a minute."
    case "TurnCancelled":
      return error.reason === "shutdown" ?
        "I'm restarting and could not finish that. Please send it again in a moment." :
        "That request was cancelled."
    case "InvalidRequest":
    case "InvalidIsolationKey":
      return "Sorry, I can't handle that message."
    case "AgentError":
      return "Sorry, something went wrong while answering. Please try again."
  }
}
