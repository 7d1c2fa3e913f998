/**
 * The Chat Completions wire: the request body checked by hand (each problem names its `param`, as OpenAI does:
 * `messages[2].tool_calls[0].function.name`) and mapped to what the host runs, and OpenAI's error envelope.
 */
import type { RunOptions, ToolDefinition } from "../../domain/ChannelRequest.js"
import type { Content } from "../../domain/Content.js"
import type { Message } from "../../domain/Message.js"
import * as OpenAiErrors from "../shared/OpenAiErrors.js"

type Obj = Record<string, unknown>

const isObj = (u: unknown): u is Obj => u !== null && typeof u === "object" && !Array.isArray(u)

/** A request problem and the parameter it concerns. */
export interface Problem {
  readonly message: string
  readonly param: string | null
  /** OpenAI's `code` (default `invalid_request`). */
  readonly code?: string
}

class Invalid {
  constructor(readonly problem: Problem) {}
}

const fail = (param: string, message: string, code?: string): never => {
  throw new Invalid({ message: `${param}: ${message}`, param, ...(code === undefined ? {} : { code }) })
}

/** The request as the channel runs it. */
export interface ChatRequest {
  /** Every message but system/developer ones, oldest first. */
  readonly messages: ReadonlyArray<Message>
  readonly options: RunOptions
  readonly model: string | undefined
  readonly stream: boolean
  readonly includeUsage: boolean
  /** `metadata.session_id`: the caller's name for a conversation the host keeps (see docs/CHAT_COMPLETIONS.md). */
  readonly sessionId: string | undefined
  /** `safety_identifier` (preferred) or `user`. */
  readonly user: string | undefined
  readonly onDisconnect: unknown
}

const toolName = /^[a-zA-Z0-9_-]{1,64}$/
// It names a session: printable ASCII, no edge spaces (like the Invocations channel's session ids).
const sessionIdPattern = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/

const dataUrl = /^data:([^;,]+)?(?:;[^,]*)?;base64,(.*)$/s

const fromUrl = (url: string, fallbackType: string, name?: string): Content => {
  const match = dataUrl.exec(url)
  if (match !== null) {
    const mediaType = match[1] ?? fallbackType
    return name === undefined ?
      { _tag: "data", mediaType, data: match[2]! } :
      { _tag: "data", mediaType, data: match[2]!, name }
  }
  if (!/^https?:\/\//i.test(url)) return fail("url", "expected an http(s) URL or a base64 data URL")
  return name === undefined ?
    { _tag: "uri", uri: url, mediaType: fallbackType } :
    { _tag: "uri", uri: url, mediaType: fallbackType, name }
}

const string = (value: unknown, param: string): string =>
  typeof value === "string" ? value : fail(param, "expected a string")

/** `content` as text: a string or an array of text (and refusal) parts. */
const textContent = (value: unknown, param: string): string => {
  if (typeof value === "string") return value
  if (!Array.isArray(value)) return fail(param, "expected a string or an array of text parts")
  let out = ""
  value.forEach((part, i) => {
    const p = `${param}[${i}]`
    if (!isObj(part)) return fail(p, "a content part must be an object")
    if (part.type === "text") out += string(part.text, `${p}.text`)
    else if (part.type === "refusal") out += string(part.refusal, `${p}.refusal`)
    else fail(`${p}.type`, `expected "text" here, got ${JSON.stringify(part.type)}`)
  })
  return out
}

const userPart = (part: unknown, param: string): Content => {
  if (!isObj(part)) return fail(param, "a content part must be an object")
  switch (part.type) {
    case "text":
      return { _tag: "text", text: string(part.text, `${param}.text`) }
    case "image_url": {
      const image = part.image_url
      const url = isObj(image) ? image.url : image
      if (typeof url !== "string" || url.length === 0) return fail(`${param}.image_url.url`, "expected a URL")
      try {
        return fromUrl(url, "image/*")
      } catch (error) {
        if (error instanceof Invalid) return fail(`${param}.image_url.url`, "expected an http(s) or data URL")
        throw error
      }
    }
    case "input_audio": {
      const audio = part.input_audio
      if (!isObj(audio)) return fail(`${param}.input_audio`, "expected { data, format }")
      const data = string(audio.data, `${param}.input_audio.data`)
      const format = string(audio.format, `${param}.input_audio.format`)
      return { _tag: "data", mediaType: `audio/${format}`, data }
    }
    case "file": {
      const file = part.file
      if (!isObj(file) || typeof file.file_data !== "string") {
        return fail(`${param}.file`, "a file part needs file.file_data (file ids are not supported)")
      }
      const name = typeof file.filename === "string" ? file.filename : undefined
      return file.file_data.startsWith("data:") ?
        fromUrl(file.file_data, "application/octet-stream", name) :
        name === undefined ?
        { _tag: "data", mediaType: "application/octet-stream", data: file.file_data } :
        { _tag: "data", mediaType: "application/octet-stream", data: file.file_data, name }
    }
    default:
      return fail(`${param}.type`, `unsupported content part type ${JSON.stringify(part.type)}`)
  }
}

interface Mapped {
  readonly messages: Array<Message>
  readonly instructions: Array<string>
}

const message = (raw: unknown, param: string, out: Mapped): void => {
  if (!isObj(raw)) return fail(param, "a message must be an object")
  const role = raw.role
  switch (role) {
    case "system":
    case "developer":
      out.instructions.push(textContent(raw.content, `${param}.content`))
      return
    case "user": {
      const content = raw.content
      const contents: Array<Content> = typeof content === "string" ?
        [{ _tag: "text", text: content }] :
        Array.isArray(content) ?
        content.map((part, i) => userPart(part, `${param}.content[${i}]`)) :
        fail(`${param}.content`, "expected a string or an array of content parts")
      out.messages.push({ role: "user", contents })
      return
    }
    case "assistant": {
      const contents: Array<Content> = []
      if (raw.content !== undefined && raw.content !== null) {
        const text = textContent(raw.content, `${param}.content`)
        if (text.length > 0) contents.push({ _tag: "text", text })
      }
      const calls = raw.tool_calls
      if (calls !== undefined && calls !== null) {
        if (!Array.isArray(calls)) return fail(`${param}.tool_calls`, "expected an array")
        calls.forEach((call, i) => {
          const p = `${param}.tool_calls[${i}]`
          if (!isObj(call)) return fail(p, "a tool call must be an object")
          const id = string(call.id, `${p}.id`)
          const fn = call.function
          if (!isObj(fn)) return fail(`${p}.function`, "expected { name, arguments }")
          contents.push({
            _tag: "function_call",
            callId: id,
            name: string(fn.name, `${p}.function.name`),
            arguments: string(fn.arguments, `${p}.function.arguments`)
          })
        })
      }
      out.messages.push({ role: "assistant", contents })
      return
    }
    case "tool": {
      const callId = string(raw.tool_call_id, `${param}.tool_call_id`)
      const result = textContent(raw.content, `${param}.content`)
      out.messages.push({ role: "tool", contents: [{ _tag: "function_result", callId, result }] })
      return
    }
    case "function":
      return fail(`${param}.role`, "the legacy \"function\" role is not supported: send tool messages")
    default:
      return fail(`${param}.role`, "role must be one of system, developer, user, assistant, tool")
  }
}

const tool = (raw: unknown, param: string): ToolDefinition => {
  if (!isObj(raw)) return fail(param, "a tool must be an object")
  if (raw.type !== "function") {
    return fail(`${param}.type`, `only function tools are supported, got ${JSON.stringify(raw.type)}`)
  }
  const fn = raw.function
  if (!isObj(fn)) return fail(`${param}.function`, "expected { name, description?, parameters? }")
  const name = string(fn.name, `${param}.function.name`)
  if (!toolName.test(name)) {
    return fail(`${param}.function.name`, "a function name is 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")
  }
  const def: { -readonly [K in keyof ToolDefinition]: ToolDefinition[K] } = { name }
  if (fn.description !== undefined && fn.description !== null) {
    def.description = string(fn.description, `${param}.function.description`)
  }
  if (fn.parameters !== undefined && fn.parameters !== null) {
    if (!isObj(fn.parameters)) return fail(`${param}.function.parameters`, "expected a JSON schema object")
    def.parameters = fn.parameters
  }
  if (fn.strict !== undefined && fn.strict !== null) {
    if (typeof fn.strict !== "boolean") return fail(`${param}.function.strict`, "expected a boolean")
    def.strict = fn.strict
  }
  return def
}

const toolChoice = (raw: unknown, tools: ReadonlyArray<ToolDefinition>): unknown => {
  if (raw === "none" || raw === "auto" || raw === "required") return raw
  if (isObj(raw) && raw.type === "function" && isObj(raw.function) && typeof raw.function.name === "string") {
    const name = raw.function.name
    if (!tools.some((t) => t.name === name)) {
      return fail("tool_choice.function.name", `no tool named ${JSON.stringify(name)} is in tools`)
    }
    return { type: "function", name }
  }
  return fail("tool_choice", "expected \"none\", \"auto\", \"required\" or { type: \"function\", function: { name } }")
}

/** `response_format` as the host's text format (the Responses shape: `{ type, name, schema, strict }`). */
const responseFormat = (raw: unknown): unknown => {
  if (!isObj(raw)) return fail("response_format", "expected an object with a type")
  switch (raw.type) {
    case "text":
      return undefined
    case "json_object":
      return { type: "json_object" }
    case "json_schema": {
      const spec = raw.json_schema
      if (!isObj(spec)) return fail("response_format.json_schema", "expected { name, schema, strict? }")
      const name = string(spec.name, "response_format.json_schema.name")
      if (spec.schema !== undefined && !isObj(spec.schema)) {
        return fail("response_format.json_schema.schema", "expected a JSON schema object")
      }
      return { type: "json_schema", name, schema: spec.schema ?? {}, strict: spec.strict === true }
    }
    default:
      return fail("response_format.type", "expected \"text\", \"json_object\" or \"json_schema\"")
  }
}

const number = (body: Obj, key: string, min: number, max: number): number | undefined => {
  const value = body[key]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !(value >= min && value <= max)) {
    return fail(key, `must be a number between ${min} and ${max}`)
  }
  return value
}

const positiveInt = (body: Obj, key: string): number | undefined => {
  const value = body[key]
  if (value === undefined || value === null) return undefined
  if (!Number.isSafeInteger(value) || (value as number) < 1) return fail(key, "must be a positive integer")
  return value as number
}

const metadataOf = (raw: unknown): Record<string, string> | undefined => {
  if (raw === undefined || raw === null) return undefined
  if (!isObj(raw)) return fail("metadata", "expected an object of strings")
  const entries = Object.entries(raw)
  if (entries.length > 16) return fail("metadata", "metadata has at most 16 keys")
  for (const [k, v] of entries) {
    if (k.length > 64) fail("metadata", "metadata keys are at most 64 characters")
    if (typeof v !== "string" || v.length > 512) {
      fail(`metadata.${k}`, "metadata values are strings of at most 512 characters")
    }
  }
  return raw as Record<string, string>
}

/** The request, or its first problem. */
export const parseRequest = (body: Obj): ChatRequest | { readonly problem: Problem } => {
  try {
    return parse(body)
  } catch (error) {
    if (error instanceof Invalid) return { problem: error.problem }
    throw error
  }
}

const parse = (body: Obj): ChatRequest => {
  const rawMessages = body.messages
  if (rawMessages === undefined || rawMessages === null) {
    return fail("messages", "messages is required", "missing_required_parameter")
  }
  if (!Array.isArray(rawMessages) || rawMessages.length === 0) return fail("messages", "expected a non-empty array")
  const n = body.n
  if (n !== undefined && n !== null && n !== 1) {
    return fail("n", "only n = 1 is supported: this host returns one choice per request", "unsupported_value")
  }
  const model = body.model
  if (model !== undefined && model !== null && typeof model !== "string") return fail("model", "expected a string")
  const stream = body.stream
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") {
    return fail("stream", "expected a boolean")
  }
  let includeUsage = false
  const streamOptions = body.stream_options
  if (streamOptions !== undefined && streamOptions !== null) {
    if (stream !== true) return fail("stream_options", "stream_options is only allowed when stream is true")
    if (!isObj(streamOptions)) return fail("stream_options", "expected an object")
    const include = streamOptions.include_usage
    if (include !== undefined && include !== null && typeof include !== "boolean") {
      return fail("stream_options.include_usage", "expected a boolean")
    }
    includeUsage = include === true
  }
  const mapped: Mapped = { messages: [], instructions: [] }
  rawMessages.forEach((m, i) => message(m, `messages[${i}]`, mapped))

  const options: { -readonly [K in keyof RunOptions]: RunOptions[K] } = {}
  if (mapped.instructions.length > 0) options.instructions = mapped.instructions.join("\n\n")
  if (typeof model === "string") options.model = model
  const temperature = number(body, "temperature", 0, 2)
  if (temperature !== undefined) options.temperature = temperature
  const topP = number(body, "top_p", 0, 1)
  if (topP !== undefined) options.topP = topP
  const maxTokens = positiveInt(body, "max_completion_tokens") ?? positiveInt(body, "max_tokens")
  if (maxTokens !== undefined) options.maxOutputTokens = maxTokens
  const rawTools = body.tools
  if (rawTools !== undefined && rawTools !== null) {
    if (!Array.isArray(rawTools)) return fail("tools", "expected an array")
    if (rawTools.length > 128) return fail("tools", "at most 128 tools")
    const tools = rawTools.map((t, i) => tool(t, `tools[${i}]`))
    if (tools.length > 0) options.tools = tools
  }
  if (body.tool_choice !== undefined && body.tool_choice !== null) {
    options.toolChoice = toolChoice(body.tool_choice, options.tools ?? [])
  }
  const parallel = body.parallel_tool_calls
  if (parallel !== undefined && parallel !== null) {
    if (typeof parallel !== "boolean") return fail("parallel_tool_calls", "expected a boolean")
    options.parallelToolCalls = parallel
  }
  if (body.response_format !== undefined && body.response_format !== null) {
    const format = responseFormat(body.response_format)
    if (format !== undefined) options.textFormat = format
  }
  const metadata = metadataOf(body.metadata)
  if (metadata !== undefined) options.metadata = metadata
  const sessionId = metadata?.session_id
  if (sessionId !== undefined && (sessionId.length > 200 || !sessionIdPattern.test(sessionId))) {
    return fail("metadata.session_id", "a session id is 1-200 printable ASCII characters (spaces only inside)")
  }
  const user = body.safety_identifier ?? body.user
  if (user !== undefined && user !== null && typeof user !== "string") return fail("user", "expected a string")
  return {
    messages: mapped.messages,
    options,
    model: typeof model === "string" ? model : undefined,
    stream: stream === true,
    includeUsage,
    sessionId,
    user: typeof user === "string" && user.length > 0 ? user.slice(0, 256) : undefined,
    onDisconnect: body.on_disconnect
  }
}

/** The messages a kept session has not seen: those after the request's last assistant message. */
export const newMessages = (messages: ReadonlyArray<Message>): ReadonlyArray<Message> => {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.role === "assistant") return messages.slice(i + 1)
  return messages
}

/** OpenAI's error envelope; a 503 has the type `server_error` here (`rate_limit_error` in Responses). */
export const { errorBody, errorResponse } = OpenAiErrors.make({ unavailable: "server_error" })
