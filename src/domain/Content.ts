/**
 * Content parts carried by messages and streaming updates.
 *
 * Plain tagged structs rather than classes: they are created per token on the streaming hot path.
 */
import { Schema } from "effect"

export const TextContent = Schema.TaggedStruct("text", {
  text: Schema.String,
  annotations: Schema.optional(Schema.Array(Schema.Unknown))
})
export type TextContent = typeof TextContent.Type

/**
 * A source a text part cites, as OpenAI's Responses API annotates output text (`url_citation`): the cited span is
 * `[start_index, end_index)` of the part's text. Text parts carry annotations as unknown values; this is the one
 * shape the channels read (the Responses API renders it, Teams shows it as a citation).
 */
export const UrlCitation = Schema.Struct({
  type: Schema.Literal("url_citation"),
  url: Schema.String,
  title: Schema.String,
  start_index: Schema.Int.pipe(Schema.nonNegative()),
  end_index: Schema.Int.pipe(Schema.nonNegative())
})
export type UrlCitation = typeof UrlCitation.Type

const isUrlCitation = Schema.is(UrlCitation)

/** The part's `url_citation` annotations (others are skipped). */
export const urlCitations = (part: TextContent): ReadonlyArray<UrlCitation> =>
  part.annotations === undefined ? [] : part.annotations.filter(isUrlCitation)

/** Inline bytes, base64-encoded (images, files, audio). */
export const DataContent = Schema.TaggedStruct("data", {
  mediaType: Schema.String,
  data: Schema.String,
  name: Schema.optional(Schema.String)
})
export type DataContent = typeof DataContent.Type

/** Content referenced by URL (never a URL carrying a secret). */
export const UriContent = Schema.TaggedStruct("uri", {
  uri: Schema.String,
  mediaType: Schema.String,
  name: Schema.optional(Schema.String)
})
export type UriContent = typeof UriContent.Type

/** A tool call requested by the model; `arguments` is a JSON document. */
export const FunctionCallContent = Schema.TaggedStruct("function_call", {
  callId: Schema.String,
  name: Schema.String,
  arguments: Schema.String
})
export type FunctionCallContent = typeof FunctionCallContent.Type

/** The result of a tool call, sent back to the model. */
export const FunctionResultContent = Schema.TaggedStruct("function_result", {
  callId: Schema.String,
  result: Schema.String
})
export type FunctionResultContent = typeof FunctionResultContent.Type

export const ReasoningContent = Schema.TaggedStruct("reasoning", {
  text: Schema.String
})
export type ReasoningContent = typeof ReasoningContent.Type

export const ErrorContent = Schema.TaggedStruct("error", {
  message: Schema.String,
  code: Schema.optional(Schema.String)
})
export type ErrorContent = typeof ErrorContent.Type

export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  totalTokens: Schema.Number
})
export type Usage = typeof Usage.Type

export const UsageContent = Schema.TaggedStruct("usage", {
  usage: Usage
})
export type UsageContent = typeof UsageContent.Type

export const Content = Schema.Union(
  TextContent,
  DataContent,
  UriContent,
  FunctionCallContent,
  FunctionResultContent,
  ReasoningContent,
  ErrorContent,
  UsageContent
)
export type Content = typeof Content.Type

export const text = (text: string): TextContent => ({ _tag: "text", text })

/** The concatenated text of the text parts. */
export const textOf = (contents: ReadonlyArray<Content>): string => {
  let out = ""
  for (const part of contents) {
    if (part._tag === "text") out += part.text
  }
  return out
}
