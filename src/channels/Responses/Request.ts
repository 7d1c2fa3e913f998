/**
 * A Responses request as the host sees it: input items become messages (and the normalised items stored for
 * `GET /responses/{id}/input_items`), options become `RunOptions`, `user`/`safety_identifier` the identity,
 * and the `response_target` extension a `ResponseTarget`.
 */
import type { RunOptions, ToolDefinition } from "../../domain/ChannelRequest.js"
import type { Content } from "../../domain/Content.js"
import type { ChannelIdentity, ResponseTarget } from "../../domain/Identity.js"
import type { ChannelName } from "../../domain/Ids.js"
import type { Message, Role } from "../../domain/Message.js"
import type { CreateResponseBody, WireProblem } from "./Wire.js"

/** An input item as stored and listed: the resource shape, with an id. */
export type InputItem = Record<string, unknown> & { readonly id: string; readonly type: string }

export interface ParsedInput {
  readonly messages: ReadonlyArray<Message>
  readonly items: ReadonlyArray<InputItem>
}

type Obj = Record<string, unknown>

const isObj = (u: unknown): u is Obj => u !== null && typeof u === "object" && !Array.isArray(u)

class Problem {
  constructor(readonly message: string, readonly param: string) {}
}

const fail = (param: string, message: string): never => {
  throw new Problem(`${param}: ${message}`, param)
}

const str = (item: Obj, key: string, param: string): string => {
  const value = item[key]
  if (typeof value !== "string") fail(`${param}.${key}`, "expected a string")
  return value as string
}

const optStr = (item: Obj, key: string, param: string): string | undefined => {
  const value = item[key]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "string") fail(`${param}.${key}`, "expected a string")
  return value as string
}

const dataUrl = /^data:([^;,]+)?(?:;[^,]*)?;base64,(.*)$/s

/** An image or file reference: a data URL becomes inline data, anything else a URI. */
const fromUrl = (url: string, fallbackType: string, name: string | undefined): Content => {
  const match = dataUrl.exec(url)
  if (match !== null) {
    const mediaType = match[1] ?? fallbackType
    return name === undefined ?
      { _tag: "data", mediaType, data: match[2]! } :
      { _tag: "data", mediaType, data: match[2]!, name }
  }
  return name === undefined ? { _tag: "uri", uri: url, mediaType: fallbackType } : {
    _tag: "uri",
    uri: url,
    mediaType: fallbackType,
    name
  }
}

const imageUrlOf = (part: Obj, param: string): string => {
  const raw = part["image_url"]
  if (typeof raw === "string" && raw.length > 0) return raw
  // Older clients send `{ url }`.
  if (isObj(raw) && typeof raw["url"] === "string" && raw["url"].length > 0) return raw["url"]
  if (part["file_id"] !== undefined && part["file_id"] !== null) {
    return fail(`${param}.file_id`, "file ids are not supported here; send the image as image_url (a URL or data URL)")
  }
  return fail(`${param}.image_url`, "an input_image needs image_url (a URL or a data URL)")
}

/** One content part: the domain content and its stored (resource) form. */
const contentPart = (part: unknown, param: string, role: Role): { content: Content; stored: Obj } => {
  if (!isObj(part)) return fail(param, "a content part must be an object")
  const type = part["type"]
  switch (type) {
    case "input_text":
    case "output_text":
    case "text":
    case "summary_text":
    case "reasoning_text": {
      const text = str(part, "text", param)
      const storedType = type === "output_text" || type === "text" ?
        (role === "assistant" ? "output_text" : "input_text") :
        type === "input_text" ?
        "input_text" :
        type
      return {
        content: { _tag: "text", text },
        stored: storedType === "output_text" ? { type: storedType, text, annotations: [] } : { type: storedType, text }
      }
    }
    case "refusal": {
      const refusal = str(part, "refusal", param)
      return { content: { _tag: "text", text: refusal }, stored: { type: "refusal", refusal } }
    }
    case "input_image": {
      const url = imageUrlOf(part, param)
      const detail = part["detail"] === "low" || part["detail"] === "high" ? part["detail"] : "auto"
      return { content: fromUrl(url, "image/*", undefined), stored: { type: "input_image", image_url: url, detail } }
    }
    case "input_file": {
      const filename = optStr(part, "filename", param)
      const fileData = optStr(part, "file_data", param)
      const fileUrl = optStr(part, "file_url", param)
      const stored: Obj = { type: "input_file" }
      if (filename !== undefined) stored["filename"] = filename
      if (fileData !== undefined) {
        stored["file_data"] = fileData
        const content: Content = fileData.startsWith("data:") ?
          fromUrl(fileData, "application/octet-stream", filename) :
          filename === undefined ?
          { _tag: "data", mediaType: "application/octet-stream", data: fileData } :
          { _tag: "data", mediaType: "application/octet-stream", data: fileData, name: filename }
        return { content, stored }
      }
      if (fileUrl !== undefined) {
        stored["file_url"] = fileUrl
        return { content: fromUrl(fileUrl, "application/octet-stream", filename), stored }
      }
      if (part["file_id"] !== undefined && part["file_id"] !== null) {
        return fail(`${param}.file_id`, "file ids are not supported here; send file_data or file_url")
      }
      return fail(param, "an input_file needs file_data or file_url")
    }
    default:
      return fail(`${param}.type`, `unsupported content type ${JSON.stringify(type)}`)
  }
}

const roles: ReadonlySet<string> = new Set(["user", "assistant", "system", "developer"])

const outputToString = (output: unknown, param: string): string => {
  if (typeof output === "string") return output
  if (Array.isArray(output)) {
    let text = ""
    output.forEach((part, i) => {
      const { content } = contentPart(part, `${param}[${i}]`, "tool")
      text += content._tag === "text" ? content.text : content._tag === "uri" ? content.uri : `[${content._tag}]`
    })
    return text
  }
  return fail(param, "expected a string or a list of content parts")
}

/**
 * Input items to messages. Loose content parts collect into one user message (flushed before the next item);
 * `idFor(n)` names the n-th stored item when the caller gave it no id.
 */
export const parseInput = (
  input: string | ReadonlyArray<unknown>,
  idFor: (kind: "msg" | "fc" | "fco" | "rs" | "cmp", n: number) => string,
  /** Opens a `compaction` item's `encrypted_content` (undefined: not one this host sealed for the caller). */
  openCompaction?: (content: string) => ReadonlyArray<Message> | undefined
): ParsedInput | WireProblem => {
  const messages: Array<Message> = []
  const items: Array<InputItem> = []
  if (typeof input === "string") {
    if (input.length === 0) return { message: "input must not be empty", param: "input" }
    messages.push({ role: "user", contents: [{ _tag: "text", text: input }] })
    items.push({
      id: idFor("msg", 0),
      type: "message",
      role: "user",
      status: "completed",
      content: [{ type: "input_text", text: input }]
    })
    return { messages, items }
  }
  if (input.length === 0) return { message: "input must contain at least one item", param: "input" }
  try {
    let loose: { contents: Array<Content>; stored: Array<Obj> } | undefined
    const flush = () => {
      if (loose === undefined) return
      messages.push({ role: "user", contents: loose.contents })
      items.push({
        id: idFor("msg", items.length),
        type: "message",
        role: "user",
        status: "completed",
        content: loose.stored
      })
      loose = undefined
    }
    input.forEach((item, i) => {
      const param = `input[${i}]`
      if (!isObj(item)) fail(param, "an input item must be an object")
      const it = item as Obj
      const type = it["type"] ?? (it["role"] !== undefined ? "message" : undefined)
      const givenId = typeof it["id"] === "string" && it["id"].length > 0 ? it["id"] : undefined
      switch (type) {
        case "message": {
          flush()
          const role = it["role"] ?? "user"
          if (typeof role !== "string" || !roles.has(role)) {
            fail(`${param}.role`, "role must be one of user, assistant, system, developer")
          }
          const r = role as Role
          const raw = it["content"]
          const contents: Array<Content> = []
          const stored: Array<Obj> = []
          if (typeof raw === "string") {
            contents.push({ _tag: "text", text: raw })
            stored.push(
              r === "assistant" ? { type: "output_text", text: raw, annotations: [] } : {
                type: "input_text",
                text: raw
              }
            )
          } else if (Array.isArray(raw)) {
            raw.forEach((part, j) => {
              const parsed = contentPart(part, `${param}.content[${j}]`, r)
              contents.push(parsed.content)
              stored.push(parsed.stored)
            })
          } else {
            fail(`${param}.content`, "content must be a string or a list of content parts")
          }
          messages.push({ role: r, contents })
          items.push({
            id: givenId ?? idFor("msg", items.length),
            type: "message",
            role: r,
            status: "completed",
            content: stored
          })
          return
        }
        case "function_call": {
          flush()
          const callId = str(it, "call_id", param)
          const name = str(it, "name", param)
          const args = str(it, "arguments", param)
          messages.push({ role: "assistant", contents: [{ _tag: "function_call", callId, name, arguments: args }] })
          items.push({
            id: givenId ?? idFor("fc", items.length),
            type: "function_call",
            call_id: callId,
            name,
            arguments: args,
            status: "completed"
          })
          return
        }
        case "function_call_output": {
          flush()
          const callId = str(it, "call_id", param)
          const output = outputToString(it["output"], `${param}.output`)
          messages.push({ role: "tool", contents: [{ _tag: "function_result", callId, result: output }] })
          items.push({
            id: givenId ?? idFor("fco", items.length),
            type: "function_call_output",
            call_id: callId,
            output,
            status: "completed"
          })
          return
        }
        case "reasoning": {
          flush()
          const summary = it["summary"]
          if (!Array.isArray(summary)) fail(`${param}.summary`, "expected a list of summary parts")
          let text = ""
          const stored: Array<Obj> = []
          ;(summary as Array<unknown>).forEach((part, j) => {
            const p = `${param}.summary[${j}]`
            if (!isObj(part)) fail(p, "a summary part must be an object")
            const t = str(part as Obj, "text", p)
            text += t
            stored.push({ type: "summary_text", text: t })
          })
          messages.push({ role: "assistant", contents: [{ _tag: "reasoning", text }] })
          items.push({ id: givenId ?? idFor("rs", items.length), type: "reasoning", summary: stored })
          return
        }
        case "input_text":
        case "input_image":
        case "input_file":
        case "output_text":
        case "text": {
          const parsed = contentPart(it, param, "user")
          loose ??= { contents: [], stored: [] }
          loose.contents.push(parsed.content)
          loose.stored.push(parsed.stored)
          return
        }
        case "compaction": {
          flush()
          const content = str(it, "encrypted_content", param)
          const opened = openCompaction?.(content)
          if (opened === undefined) {
            fail(
              `${param}.encrypted_content`,
              "this compaction item was not issued by this host for this caller, or it was altered: send " +
                "encrypted_content exactly as POST /responses/compact returned it"
            )
          }
          messages.push(...opened!)
          items.push({ id: givenId ?? idFor("cmp", items.length), type: "compaction", encrypted_content: content })
          return
        }
        case "item_reference":
          return fail(param, "item references are not supported; send the item itself")
        default:
          return fail(`${param}.type`, `unsupported input item type ${JSON.stringify(type)}`)
      }
    })
    flush()
  } catch (error) {
    if (error instanceof Problem) return { message: error.message, param: error.param }
    throw error
  }
  return { messages, items }
}

/** Request options for the target. `instructions` stay an option (never a system message). */
export const runOptions = (body: CreateResponseBody): RunOptions => {
  const options: { -readonly [K in keyof RunOptions]: RunOptions[K] } = {}
  if (body.instructions != null) options.instructions = body.instructions
  if (body.model != null) options.model = body.model
  if (body.temperature != null) options.temperature = body.temperature
  if (body.top_p != null) options.topP = body.top_p
  if (body.max_output_tokens != null) options.maxOutputTokens = body.max_output_tokens
  if (body.tool_choice != null) options.toolChoice = body.tool_choice
  if (body.parallel_tool_calls != null) options.parallelToolCalls = body.parallel_tool_calls
  if (body.metadata != null) options.metadata = body.metadata
  if (body.text?.format != null) options.textFormat = body.text.format
  if (body.tools != null && body.tools.length > 0) {
    options.tools = body.tools.map((tool) => {
      const def: { -readonly [K in keyof ToolDefinition]: ToolDefinition[K] } = { name: tool.name }
      if (tool.description != null) def.description = tool.description
      if (tool.parameters != null) def.parameters = tool.parameters
      if (tool.strict != null) def.strict = tool.strict
      return def
    })
  }
  return options
}

/** `safety_identifier` (preferred) or `user`, as a Responses identity. */
export const identityOf = (channel: string, body: CreateResponseBody): ChannelIdentity | undefined => {
  const id = body.safety_identifier ?? body.user
  if (id == null || id.length === 0) return undefined
  return { channel: channel as ChannelName, nativeId: id }
}

const kinds: Record<string, ResponseTarget["kind"]> = {
  originating: "originating",
  active: "active",
  all_linked: "all_linked",
  none: "none"
}

const targetList = (list: ReadonlyArray<unknown>, param: string): ReadonlyArray<string> | WireProblem => {
  const out: Array<string> = []
  for (let i = 0; i < list.length; i++) {
    const value = list[i]
    if (typeof value !== "string" || value.length === 0) {
      return { message: `${param}[${i}]: a target is a non-empty string`, param: `${param}[${i}]` }
    }
    out.push(value)
  }
  if (out.length === 0) return { message: `${param}: name at least one target`, param }
  return out
}

/**
 * The `response_target` extension: `"originating" | "active" | "all_linked" | "none"`, a channel name or
 * `channel:native_id`, a list of those, or `{ channels: [...], echo_input? }` / `{ kind }`. Absent means the
 * originating channel.
 */
export const parseResponseTarget = (raw: unknown): ResponseTarget | undefined | WireProblem => {
  const param = "response_target"
  if (raw === undefined || raw === null) return undefined
  if (typeof raw === "string") {
    if (raw.length === 0) return { message: `${param} must not be empty`, param }
    const kind = kinds[raw]
    return kind !== undefined ? { kind } : { kind: "channels", targets: [raw] }
  }
  if (Array.isArray(raw)) {
    const targets = targetList(raw, param)
    return "message" in targets ? targets : { kind: "channels", targets }
  }
  if (isObj(raw)) {
    const echo = raw["echo_input"]
    if (echo !== undefined && typeof echo !== "boolean") {
      return { message: `${param}.echo_input must be a boolean`, param: `${param}.echo_input` }
    }
    const echoInput = echo === true ? { echoInput: true } : {}
    if (Array.isArray(raw["channels"])) {
      const targets = targetList(raw["channels"], `${param}.channels`)
      return "message" in targets ? targets : { kind: "channels", targets, ...echoInput }
    }
    if (typeof raw["kind"] === "string" && kinds[raw["kind"]] !== undefined) {
      return { kind: kinds[raw["kind"]]!, ...echoInput }
    }
  }
  return {
    message:
      `${param} must be "originating", "active", "all_linked", "none", a channel name, "channel:native_id", a list of targets, or { "channels": [...] }`,
    param
  }
}
