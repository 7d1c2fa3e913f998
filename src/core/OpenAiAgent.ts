/**
 * An agent over `@effect/ai`'s `LanguageModel`: the session's history (kept by the host) plus this turn's
 * input become the prompt; the caller's function tools are offered as client-executed tools (the model may
 * answer with function calls, the caller runs them and sends the results next turn).
 *
 * `layerConfig` uses OpenAI through `@effect/ai-openai` (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL).
 */
import { LanguageModel, Tool, Toolkit } from "@effect/ai"
import type { Prompt, Response } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import type { ConfigError } from "effect"
import { Cause, Config, Effect, Layer, Option, Schema, Stream } from "effect"
import type { ToolDefinition } from "../domain/ChannelRequest.js"
import type { Content, Usage } from "../domain/Content.js"
import { AgentError } from "../domain/Errors.js"
import { issueId } from "../domain/Ids.js"
import type { AgentResponse, AgentResponseUpdate, FinishReason, Message } from "../domain/Message.js"
import * as Agent from "./Agent.js"
import type { Target } from "./Target.js"
import type { Turn } from "./Target.js"

const toFinishReason = (reason: Response.FinishReason): FinishReason => {
  switch (reason) {
    case "length":
      return "length"
    case "content-filter":
      return "content_filter"
    case "tool-calls":
      return "tool_calls"
    case "error":
      return "error"
    default:
      return "stop"
  }
}

const toUsage = (usage: Response.Usage): Usage => {
  const inputTokens = usage.inputTokens ?? 0
  const outputTokens = usage.outputTokens ?? 0
  return { inputTokens, outputTokens, totalTokens: usage.totalTokens ?? inputTokens + outputTokens }
}

const callNames = (messages: ReadonlyArray<Message>): Map<string, string> => {
  const names = new Map<string, string>()
  for (const message of messages) {
    for (const part of message.contents) {
      if (part._tag === "function_call") names.set(part.callId, part.name)
    }
  }
  return names
}

const toolResult = (
  c: Extract<Content, { _tag: "function_result" }>,
  names: Map<string, string>
): Prompt.ToolResultPartEncoded => ({
  type: "tool-result",
  id: c.callId,
  name: names.get(c.callId) ?? "unknown",
  isFailure: false,
  result: c.result,
  providerExecuted: false
})

/** Our messages as an `@effect/ai` prompt. */
export const toPrompt = (turn: Turn): ReadonlyArray<Prompt.MessageEncoded> => {
  const all = [...turn.history, ...turn.input]
  const names = callNames(all)
  const out: Array<Prompt.MessageEncoded> = []
  if (turn.options.instructions !== undefined) out.push({ role: "system", content: turn.options.instructions })
  for (const message of all) {
    switch (message.role) {
      case "system":
      case "developer": {
        const text = message.contents.flatMap((c) => (c._tag === "text" ? [c.text] : [])).join("\n")
        if (text.length > 0) out.push({ role: "system", content: text })
        break
      }
      case "user": {
        const parts: Array<Prompt.UserMessagePartEncoded> = []
        const results: Array<Prompt.ToolResultPartEncoded> = []
        for (const c of message.contents) {
          if (c._tag === "text") parts.push({ type: "text", text: c.text })
          else if (c._tag === "data") {
            parts.push({ type: "file", mediaType: c.mediaType, data: c.data, ...(c.name ? { fileName: c.name } : {}) })
          } else if (c._tag === "uri") parts.push({ type: "file", mediaType: c.mediaType, data: new URL(c.uri) })
          else if (c._tag === "function_result") results.push(toolResult(c, names))
        }
        if (parts.length > 0) out.push({ role: "user", content: parts })
        if (results.length > 0) out.push({ role: "tool", content: results })
        break
      }
      case "assistant": {
        const parts: Array<Prompt.AssistantMessagePartEncoded> = []
        for (const c of message.contents) {
          if (c._tag === "text") parts.push({ type: "text", text: c.text })
          else if (c._tag === "reasoning") parts.push({ type: "reasoning", text: c.text })
          else if (c._tag === "function_call") {
            parts.push({ type: "tool-call", id: c.callId, name: c.name, params: safeJson(c.arguments) })
          }
        }
        if (parts.length > 0) out.push({ role: "assistant", content: parts })
        break
      }
      case "tool": {
        const results: Array<Prompt.ToolResultPartEncoded> = []
        for (const c of message.contents) {
          if (c._tag === "function_result") results.push(toolResult(c, names))
        }
        if (results.length > 0) out.push({ role: "tool", content: results })
        break
      }
    }
  }
  return out
}

const safeJson = (s: string): unknown => {
  try {
    return JSON.parse(s)
  } catch {
    return s
  }
}

/** The caller's function tools, offered to the model without handlers (the caller executes them). */
const toolkitFor = (tools: ReadonlyArray<ToolDefinition>) => {
  const defined = tools.map((tool) => {
    const base = Tool.make(tool.name, {
      ...(tool.description === undefined ? {} : { description: tool.description }),
      success: Schema.Unknown
    })
    // `Tool.make` only takes struct fields; the caller's JSON Schema must reach the model verbatim, and an
    // open struct keeps every argument the model sends when the call is decoded.
    const parametersSchema = Schema.Struct({}, Schema.Record({ key: Schema.String, value: Schema.Unknown }))
      .annotations({ jsonSchema: (tool.parameters ?? { type: "object", properties: {} }) as object })
    return Object.assign(Object.create(Object.getPrototypeOf(base)), base, { parametersSchema }) as typeof base
  })
  const kit = Toolkit.make(...defined)
  const handlers = Object.fromEntries(tools.map((t) => [t.name, () => Effect.die("client-executed tool")]))
  return Effect.provide(kit, kit.toLayer(handlers as never))
}

/**
 * An upstream failure as the caller sees it: a generic message and a request id. The details (the upstream's
 * URL, status and body, which can name internal hosts or echo a credential) go to the log only, under that id.
 */
const upstreamFailure = (error: unknown): Effect.Effect<never, AgentError> =>
  Effect.flatMap(issueId("req_"), (requestId) =>
    Effect.zipRight(
      Effect.logError("the model provider failed", Cause.fail(error)).pipe(
        Effect.annotateLogs({ request_id: requestId, upstream_error: upstreamDetails(error) })
      ),
      Effect.fail(
        new AgentError({
          message: `the model provider failed (request id ${requestId})`,
          code: "upstream_error",
          requestId
        })
      )
    ))

const upstreamDetails = (error: unknown): string => {
  if (typeof error !== "object" || error === null) return String(error)
  const parts: Array<string> = []
  if ("message" in error) parts.push(String(error.message))
  if ("description" in error && error.description !== undefined) parts.push(String(error.description))
  return parts.join(": ")
}

const contentsOf = (
  parts: ReadonlyArray<Response.AnyPart>
): { contents: Array<Content>; usage?: Usage; finish?: FinishReason } => {
  const contents: Array<Content> = []
  let usage: Usage | undefined
  let finish: FinishReason | undefined
  for (const part of parts) {
    switch (part.type) {
      case "text":
        if (part.text.length > 0) contents.push({ _tag: "text", text: part.text })
        break
      case "reasoning":
        contents.push({ _tag: "reasoning", text: part.text })
        break
      case "tool-call":
        contents.push({
          _tag: "function_call",
          callId: part.id,
          name: part.name,
          arguments: JSON.stringify(part.params)
        })
        break
      case "finish":
        usage = toUsage(part.usage)
        finish = toFinishReason(part.reason)
        break
    }
  }
  return { contents, ...(usage ? { usage } : {}), ...(finish ? { finish } : {}) }
}

/** Builds the agent from the `LanguageModel` in context. */
export const make = (options: { readonly name?: string } = {}) =>
  Effect.gen(function*() {
    const model = yield* LanguageModel.LanguageModel
    const name = options.name ?? "openai-agent"
    const toolOptions = (turn: Turn) => {
      const tools = turn.options.tools ?? []
      return tools.length === 0 ? {} : { toolkit: toolkitFor(tools), disableToolCallResolution: true as const }
    }

    const run = (turn: Turn): Effect.Effect<AgentResponse, AgentError> =>
      model.generateText({ prompt: toPrompt(turn), ...toolOptions(turn) } as LanguageModel.GenerateTextOptions<{}>)
        .pipe(
          Effect.map((response) => {
            const { contents, finish, usage } = contentsOf(response.content as ReadonlyArray<Response.AnyPart>)
            const result: { -readonly [K in keyof AgentResponse]: AgentResponse[K] } = {
              messages: [{ role: "assistant", contents, authorName: name }]
            }
            if (usage) result.usage = usage
            if (finish) result.finishReason = finish
            return result
          }),
          Effect.catchAll(upstreamFailure)
        )

    const stream = (turn: Turn): Stream.Stream<AgentResponseUpdate, AgentError> =>
      model.streamText({ prompt: toPrompt(turn), ...toolOptions(turn) } as LanguageModel.GenerateTextOptions<{}>).pipe(
        Stream.mapConcat((part): ReadonlyArray<AgentResponseUpdate> => {
          const p = part as Response.AnyPart
          switch (p.type) {
            case "text-delta":
              return [{
                messageId: "msg_0",
                role: "assistant",
                contents: [{ _tag: "text", text: p.delta }],
                authorName: name
              }]
            case "reasoning-delta":
              return [{ messageId: "msg_0", role: "assistant", contents: [{ _tag: "reasoning", text: p.delta }] }]
            case "tool-call":
              return [{
                messageId: "msg_0",
                role: "assistant",
                contents: [{ _tag: "function_call", callId: p.id, name: p.name, arguments: JSON.stringify(p.params) }]
              }]
            case "finish":
              return [{
                contents: [{ _tag: "usage", usage: toUsage(p.usage) }],
                finishReason: toFinishReason(p.reason)
              }]
            default:
              return []
          }
        }),
        Stream.catchAll((error) => Stream.fromEffect(upstreamFailure(error)))
      )

    return Agent.make({ name, run, stream })
  })

/** The OpenAI-backed target from OPENAI_API_KEY, OPENAI_BASE_URL (e.g. a compatible server), OPENAI_MODEL. */
export const layerConfig: Layer.Layer<Target, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(
    Config.all({
      model: Config.string("OPENAI_MODEL").pipe(Config.withDefault("gpt-4o-mini")),
      apiUrl: Config.option(Config.string("OPENAI_BASE_URL"))
    }),
    ({ apiUrl, model }) =>
      Agent.layerEffect(make({ name: `openai:${model}` })).pipe(
        Layer.provide(OpenAiLanguageModel.layer({ model })),
        Layer.provide(
          OpenAiClient.layerConfig({
            apiKey: Config.redacted("OPENAI_API_KEY"),
            ...(Option.isSome(apiUrl) ? { apiUrl: Config.succeed(apiUrl.value) } : {})
          })
        ),
        Layer.provide(FetchHttpClient.layer)
      )
  )
)
