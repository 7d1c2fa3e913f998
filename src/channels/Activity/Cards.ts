/**
 * What a reply looks like as activities: text split under the message size limit, images as attachments, and on
 * the final message the AI-generated label and feedback: Teams' own feedback buttons (`feedbackLoopEnabled`, which
 * come back as a `message/submitAction` invoke) or, elsewhere, a small Adaptive Card (v1.5) with two submit
 * buttons (which come back as a message whose `value` is `{ action: "feedback", reaction }`).
 */
import type { DataContent, UriContent } from "../../domain/Content.js"
import type { AgentResponse } from "../../domain/Message.js"
import { replyOf, splitText } from "../shared/ReplyText.js"

/** Teams accepts about 28 KB per message; text is split well under it. */
export const MAX_TEXT_LENGTH = 7000

export const ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"

/** Marks a message as AI generated (Teams shows the label). */
export const aiLabel = {
  type: "https://schema.org/Message",
  "@type": "Message",
  "@context": "https://schema.org",
  additionalType: ["AIGeneratedContent"]
} as const

/** Thumbs up and down, for channels without Teams' native feedback. */
export const feedbackCard = () => ({
  contentType: ADAPTIVE_CARD,
  content: {
    type: "AdaptiveCard",
    $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
    version: "1.5",
    body: [{ type: "TextBlock", text: "Was this helpful?", size: "Small", isSubtle: true }],
    actions: [
      { type: "Action.Submit", title: "👍", data: { action: "feedback", reaction: "like" } },
      { type: "Action.Submit", title: "👎", data: { action: "feedback", reaction: "dislike" } }
    ]
  }
})

const imageAttachment = (image: DataContent | UriContent) => ({
  contentType: image.mediaType,
  contentUrl: image._tag === "uri" ? image.uri : `data:${image.mediaType};base64,${image.data}`,
  ...(image.name === undefined ? {} : { name: image.name })
})

export interface RenderOptions {
  /** Teams: native feedback buttons; elsewhere: the feedback card. */
  readonly teams: boolean
  readonly feedback: boolean
}

/** The text chunks of a reply (a placeholder when it has nothing to show). */
export const textChunks = (response: AgentResponse): ReadonlyArray<string> => {
  const reply = replyOf(response)
  const chunks = splitText(reply.text, MAX_TEXT_LENGTH).filter((chunk) => chunk.trim().length > 0)
  return chunks.length === 0 && reply.images.length === 0 ? ["(no response)"] : chunks
}

/** The message activities of a reply, in order; the last carries the images, the label and the feedback. */
export const messages = (
  response: AgentResponse,
  options: RenderOptions
): Array<Record<string, unknown>> => {
  const reply = replyOf(response)
  const chunks = [...textChunks(response)]
  if (chunks.length === 0) chunks.push("")
  return chunks.map((text, index) => {
    const last = index === chunks.length - 1
    if (!last) return { type: "message", text, textFormat: "markdown" }
    const attachments: Array<unknown> = reply.images.map(imageAttachment)
    if (options.feedback && !options.teams) attachments.push(feedbackCard())
    return {
      type: "message",
      text,
      textFormat: "markdown",
      entities: [aiLabel],
      ...(attachments.length === 0 ? {} : { attachments }),
      ...(options.feedback && options.teams ? { channelData: { feedbackLoopEnabled: true } } : {})
    }
  })
}

/** A plain text message (welcome, refusals). */
export const text = (text: string): Record<string, unknown> => ({ type: "message", text, textFormat: "plain" })
