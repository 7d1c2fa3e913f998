/**
 * What a reply looks like as activities: text split under the message size limit, images as attachments, and on
 * the final message the AI-generated label, the sources the text cites (Teams citations: `[n]` markers in the
 * text, one `Claim` per source in the message entity), a structured result as an Adaptive Card (v1.5), and
 * feedback: Teams' own feedback buttons (`feedbackLoopEnabled`, which come back as a `message/submitAction`
 * invoke) or, elsewhere, a small Adaptive Card with two submit buttons (which come back as a message whose `value`
 * is `{ action: "feedback", reaction, responseId }`).
 */
import type { DataContent, TextContent, UriContent } from "../../domain/Content.js"
import { urlCitations } from "../../domain/Content.js"
import type { AgentResponse, Message } from "../../domain/Message.js"
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

const card = (body: ReadonlyArray<unknown>, actions?: ReadonlyArray<unknown>) => ({
  contentType: ADAPTIVE_CARD,
  content: {
    type: "AdaptiveCard",
    $schema: "http://adaptivecards.io/schemas/adaptive-card.json",
    version: "1.5",
    body,
    ...(actions === undefined ? {} : { actions })
  }
})

/** Thumbs up and down, for channels without Teams' native feedback; the data names the response rated. */
export const feedbackCard = (responseId?: string) => {
  const data = (reaction: string) => ({
    action: "feedback",
    reaction,
    ...(responseId === undefined ? {} : { responseId })
  })
  return card([{ type: "TextBlock", text: "Was this helpful?", size: "Small", isSubtle: true }], [
    { type: "Action.Submit", title: "👍", data: data("like") },
    { type: "Action.Submit", title: "👎", data: data("dislike") }
  ])
}

/** Teams shows at most 20 citations, with names up to 80 characters and abstracts up to 160. */
export const MAX_CITATIONS = 20

/** A cited source as Teams' citation entity lists it (`position` is the `[n]` in the text). */
export interface Citation {
  readonly position: number
  readonly url: string
  readonly title: string
  readonly abstract: string
}

const clip = (text: string, max: number) => text.length <= max ? text : `${text.slice(0, max - 1)}…`

export const citationEntity = (citation: Citation) => ({
  "@type": "Claim",
  position: citation.position,
  appearance: {
    "@type": "DigitalDocument",
    name: clip(citation.title.trim() || citation.url, 80),
    url: citation.url,
    abstract: clip(citation.abstract.trim() || citation.title.trim() || citation.url, 160)
  }
})

/**
 * The response with `[n]` markers after each span its assistant text cites (`url_citation` annotations), and the
 * sources in order of first citation; one number per URL. A marker the text already has at that place is not
 * repeated. Annotations past the 20th source are left unmarked.
 */
export const withCitations = (
  response: AgentResponse
): { readonly response: AgentResponse; readonly citations: ReadonlyArray<Citation> } => {
  const byUrl = new Map<string, Citation>()
  const mark = (part: TextContent): TextContent => {
    const cites = [...urlCitations(part)].sort((a, b) => a.start_index - b.start_index || a.end_index - b.end_index)
    if (cites.length === 0) return part
    const inserts: Array<{ at: number; order: number; marker: string }> = []
    for (const cite of cites) {
      let citation = byUrl.get(cite.url)
      if (citation === undefined) {
        if (byUrl.size >= MAX_CITATIONS) continue
        const at = Math.min(cite.start_index, part.text.length)
        citation = {
          position: byUrl.size + 1,
          url: cite.url,
          title: cite.title,
          abstract: part.text.slice(at, Math.max(at, Math.min(cite.end_index, part.text.length)))
        }
        byUrl.set(cite.url, citation)
      }
      inserts.push({
        at: Math.min(cite.end_index, part.text.length),
        order: inserts.length,
        marker: `[${citation.position}]`
      })
    }
    // From the end, so the offsets still to apply stay valid (markers at one place keep their order).
    let text = part.text
    for (const { at, marker } of inserts.sort((a, b) => b.at - a.at || b.order - a.order)) {
      if (text.startsWith(marker, at)) continue
      text = `${text.slice(0, at)}${marker}${text.slice(at)}`
    }
    return { _tag: "text", text }
  }
  let changed = false
  const messages = response.messages.map((message): Message => {
    if (message.role !== "assistant") return message
    return {
      ...message,
      contents: message.contents.map((part) => {
        if (part._tag !== "text" || part.annotations === undefined) return part
        changed = true
        return mark(part)
      })
    }
  })
  return { response: changed ? { ...response, messages } : response, citations: [...byUrl.values()] }
}

// A structured result larger than this (as card JSON) is shown as JSON text instead; Teams takes about 28 KB.
const MAX_CARD_CHARS = 20_000
const MAX_CARD_DEPTH = 4
const MAX_CARD_ITEMS = 100

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype

/** Plain JSON objects and arrays (not class instances, which are not results a person reads). */
export const isStructured = (value: unknown): value is Record<string, unknown> | ReadonlyArray<unknown> =>
  isPlainObject(value) || Array.isArray(value)

const scalarText = (value: unknown): string =>
  value === null ? "null" : typeof value === "string" ? value : JSON.stringify(value) ?? String(value)

/**
 * A structured result (a plain JSON object or array) as an Adaptive Card: scalar fields as a fact set, nested
 * objects and arrays under their key as bold headings, lists of scalars as a bulleted list. Deep or large values
 * are shown as JSON in a monospace block, and a card that would be too large for a message is JSON text.
 */
export const structuredCard = (value: Record<string, unknown> | ReadonlyArray<unknown>) => {
  let items = 0
  const json = (v: unknown) => ({
    type: "TextBlock",
    text: clip(JSON.stringify(v, null, 2) ?? "", 4000),
    fontType: "Monospace",
    wrap: true
  })
  const elements = (v: unknown, depth: number): Array<unknown> => {
    items++
    if (depth > MAX_CARD_DEPTH || items > MAX_CARD_ITEMS) return [json(v)]
    if (Array.isArray(v)) {
      if (v.every((item) => !isStructured(item))) {
        return [{ type: "TextBlock", text: v.map((item) => `- ${scalarText(item)}`).join("\n"), wrap: true }]
      }
      return v.map((item, index) => ({
        type: "Container",
        separator: index > 0,
        items: isStructured(item) ? elements(item, depth + 1) : [{ type: "TextBlock", text: scalarText(item) }]
      }))
    }
    if (!isPlainObject(v)) return [{ type: "TextBlock", text: scalarText(v), wrap: true }]
    const out: Array<unknown> = []
    const facts: Array<{ title: string; value: string }> = []
    const flush = () => {
      if (facts.length > 0) out.push({ type: "FactSet", facts: facts.splice(0) })
    }
    for (const [key, field] of Object.entries(v)) {
      if (!isStructured(field)) {
        facts.push({ title: key, value: scalarText(field) })
        continue
      }
      flush()
      out.push(
        { type: "TextBlock", text: key, weight: "Bolder", wrap: true, spacing: "Medium" },
        { type: "Container", items: elements(field, depth + 1) }
      )
    }
    flush()
    return out
  }
  const built = card(elements(value, 0))
  return JSON.stringify(built).length <= MAX_CARD_CHARS ? built : card([json(value)])
}

/**
 * The structured result of a reply, if any: the response's `value`, or else an assistant text that is, whole, a
 * JSON object or array (a model answering in a JSON response format). With `fromText`, the text is the result
 * and is not sent again as text.
 */
export const structuredOf = (
  response: AgentResponse,
  text: string
): { readonly value: Record<string, unknown> | ReadonlyArray<unknown>; readonly fromText: boolean } | undefined => {
  if (isStructured(response.value)) return { value: response.value, fromText: false }
  const trimmed = text.trim()
  if (!(trimmed.startsWith("{") && trimmed.endsWith("}")) && !(trimmed.startsWith("[") && trimmed.endsWith("]"))) {
    return undefined
  }
  try {
    const parsed: unknown = JSON.parse(trimmed)
    return isStructured(parsed) ? { value: parsed, fromText: true } : undefined
  } catch {
    return undefined
  }
}

const imageAttachment = (image: DataContent | UriContent) => ({
  contentType: image.mediaType,
  contentUrl: image._tag === "uri" ? image.uri : `data:${image.mediaType};base64,${image.data}`,
  ...(image.name === undefined ? {} : { name: image.name })
})

export interface RenderOptions {
  /** Teams: native feedback buttons; elsewhere: the feedback card. */
  readonly teams: boolean
  readonly feedback: boolean
  /** The id the turn ran under, named in the feedback card's data. */
  readonly responseId?: string | undefined
}

/**
 * The message activities of a reply, in order; the last carries the images, the structured result's card, the
 * label with the citations, and the feedback.
 */
export const messages = (
  original: AgentResponse,
  options: RenderOptions
): Array<Record<string, unknown>> => {
  const { citations, response } = withCitations(original)
  const reply = replyOf(response)
  const structured = structuredOf(response, reply.text)
  const chunks = structured?.fromText === true ?
    [] :
    splitText(reply.text, MAX_TEXT_LENGTH).filter((chunk) => chunk.trim().length > 0)
  if (chunks.length === 0) chunks.push(structured === undefined && reply.images.length === 0 ? "(no response)" : "")
  return chunks.map((text, index) => {
    const last = index === chunks.length - 1
    if (!last) return { type: "message", text, textFormat: "markdown" }
    const attachments: Array<unknown> = reply.images.map(imageAttachment)
    if (structured !== undefined) attachments.push(structuredCard(structured.value))
    if (options.feedback && !options.teams) attachments.push(feedbackCard(options.responseId))
    const label = citations.length === 0 ? aiLabel : { ...aiLabel, citation: citations.map(citationEntity) }
    return {
      type: "message",
      text,
      textFormat: "markdown",
      entities: [label],
      ...(attachments.length === 0 ? {} : { attachments }),
      ...(options.feedback && options.teams ? { channelData: { feedbackLoopEnabled: true } } : {})
    }
  })
}

/** A plain text message (welcome, refusals). */
export const text = (text: string): Record<string, unknown> => ({ type: "message", text, textFormat: "plain" })
