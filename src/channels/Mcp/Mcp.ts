/**
 * The MCP channel: the hosted agent as one tool (`ask` by default) over MCP's Streamable HTTP transport at
 * `/mcp`, served by `@modelcontextprotocol/sdk`'s web-standard transport (see docs/MCP.md for why not
 * `@effect/ai`'s McpServer).
 *
 * Stateless: every POST gets its own SDK server and transport, which end with its response; there is no
 * `Mcp-Session-Id` and nothing to bound between requests. The conversation lives in the tool's `session`
 * argument instead (an isolation key scoped to the caller, stored in the host's state), so it survives restarts
 * and works behind any number of instances. A call that carries a `progressToken` streams the turn and sends a
 * progress notification per text chunk on the response's SSE stream; a failed turn is a tool error (`isError`).
 */
import { HttpServerResponse } from "@effect/platform"
import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"
import type { CallToolResult, ServerNotification } from "@modelcontextprotocol/sdk/types.js"
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js"
import type { ConfigError } from "effect"
import { Config, Effect, Either, FiberSet, Option, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks, RouteInput } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import { isolationKey, issueId } from "../../domain/Ids.js"
import { responseText, userMessage } from "../../domain/Message.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { callerOf, callerScopedKey } from "../../http/CallerScope.js"
import { describeBodyError, json, readJson } from "../../http/HttpBody.js"
import { describeTurnError } from "../../http/TurnErrors.js"
import * as Tool from "./Tool.js"

export interface Options {
  readonly name?: string
  /** Mount path (default `/mcp`). */
  readonly path?: string
  /** The tool's name (default `ask`). */
  readonly toolName?: string
  readonly toolDescription?: string
  /** What `initialize` reports as the server (default `effect-agent-host`). */
  readonly serverName?: string
  readonly serverVersion?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

const defaultDescription =
  "Ask the hosted agent. Omit `session` to start a conversation; pass the `session` of an earlier result to " +
  "continue it."

/** A JSON-RPC error answered before the SDK sees the request (no request id is known yet). */
const rpcError = (status: number, code: number, message: string, headers?: Record<string, string>) =>
  json({ jsonrpc: "2.0", id: null, error: { code, message } }, status, headers)

// The headers the transport reads; the rest of the request (body, other headers) it gets from us or not at all.
const forwarded = ["accept", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"] as const

const webRequest = (input: RouteInput): Request => {
  const headers = new Headers()
  for (const name of forwarded) {
    const value = input.request.headers[name]
    if (typeof value === "string") headers.set(name, value)
  }
  return new Request(`http://localhost${input.request.url}`, { method: input.request.method, headers })
}

/**
 * The transport's web `Response` as the host's response (a plain header record, as the listener writes it);
 * `release` runs once the body is written or dropped, or at once when there is none.
 */
const fromWeb = (
  response: Response,
  release: Effect.Effect<void>
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => {
    headers[name] = value
  })
  const body = response.body
  if (body === null) return Effect.as(release, HttpServerResponse.empty({ status: response.status, headers }))
  return Effect.succeed(HttpServerResponse.stream(
    Stream.ensuring(Stream.fromReadableStream({ evaluate: () => body, onError: (error) => error }), release),
    { status: response.status, headers }
  ))
}

const toolError = (text: string): CallToolResult => ({ content: [{ type: "text", text }], isError: true })

const turnFailure = (error: TurnError): CallToolResult => {
  const parts = describeTurnError(error)
  return toolError(`${parts.code}: ${parts.message}`)
}

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "mcp"
  const toolName = options.toolName ?? "ask"
  const tool = Tool.definition(toolName, options.toolDescription ?? defaultDescription)
  const serverInfo = { name: options.serverName ?? "effect-agent-host", version: options.serverVersion ?? "1.0.0" }
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const authorized = makeChecker(ctx.settings.apiKeys)
      const apiKeysConfigured = ctx.settings.apiKeys.length > 0 || ctx.settings.pushKeys.length > 0
      // The SDK calls tool handlers as promises: their fibers live in the channel's scope (interrupted at
      // shutdown), with the host's services.
      const runPromise = yield* FiberSet.makeRuntimePromise<never>()

      const call = (
        input: RouteInput,
        args: unknown,
        progressToken: string | number | undefined,
        notify: (notification: ServerNotification) => Promise<void>
      ): Effect.Effect<CallToolResult> =>
        Effect.gen(function*() {
          const parsed = Tool.parseArguments(args)
          if ("problem" in parsed) return toolError(`invalid_arguments: ${parsed.problem}`)
          // A new session's id is a bearer handle on the conversation: it comes from the CSPRNG.
          const session = parsed.session ?? (yield* issueId("mcp_"))
          const caller = callerOf(input.request, input.isolation.user, apiKeysConfigured)
          const key = isolationKey(callerScopedKey(caller, `${name}:${session}`))
          if (Either.isLeft(key)) return toolError(`invalid_arguments: session ${key.left.message}`)
          const request: ChannelRequest = {
            channel: name,
            operation: "tools/call",
            input: [userMessage(parsed.prompt)],
            session: parsed.session === undefined ? { isolationKey: key.right, fresh: true } : {
              isolationKey: key.right
            },
            attributes: { session_id: session },
            stream: progressToken !== undefined
          }
          const done = (outcome: ChannelModule.TurnOutcome): CallToolResult => {
            const text = Option.isSome(outcome.originating) ? responseText(outcome.originating.value.response) : ""
            return {
              content: [{ type: "text", text }],
              structuredContent: { response: text, session }
            }
          }
          if (progressToken === undefined) {
            return yield* ctx.run(request, args).pipe(Effect.match({ onFailure: turnFailure, onSuccess: done }))
          }
          return yield* Effect.gen(function*() {
            const turn = yield* ctx.runStream(request, args)
            let progress = 0
            yield* Stream.runForEach(turn.updates, (update) => {
              let text = ""
              for (const part of update.contents) if (part._tag === "text") text += part.text
              if (text.length === 0) return Effect.void
              progress += 1
              // A notification that cannot be sent (the caller left) does not stop the turn.
              return Effect.ignore(
                Effect.tryPromise(() =>
                  notify({ method: "notifications/progress", params: { progressToken, progress, message: text } })
                )
              )
            })
            return done(yield* turn.result)
          }).pipe(Effect.catchAll((error) => Effect.succeed(turnFailure(error))))
        })

      const makeServer = (input: RouteInput): Server => {
        const server = new Server(serverInfo, { capabilities: { tools: { listChanged: false } } })
        server.setRequestHandler(ListToolsRequestSchema, () => Promise.resolve({ tools: [tool] }))
        server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
          if (request.params.name !== toolName) {
            return Promise.reject(
              new McpError(ErrorCode.InvalidParams, `unknown tool ${JSON.stringify(request.params.name.slice(0, 64))}`)
            )
          }
          return runPromise(
            call(input, request.params.arguments, request.params._meta?.progressToken, extra.sendNotification)
          )
        })
        return server
      }

      const handle = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) {
            return rpcError(401, -32001, "a valid API key is required: send Authorization: Bearer <key>", {
              "www-authenticate": "Bearer"
            })
          }
          const body = yield* Effect.either(readJson(input.request, ctx.settings))
          if (Either.isLeft(body)) {
            const problem = describeBodyError(body.left)
            return rpcError(problem.status, problem.type === "invalid_json" ? -32700 : -32600, problem.message)
          }
          const server = makeServer(input)
          const transport = new WebStandardStreamableHTTPServerTransport({})
          const release = Effect.promise(() => server.close().catch(() => undefined))
          // No session id generator: the transport is stateless.
          const response = yield* Effect.either(Effect.tryPromise(async () => {
            await server.connect(transport)
            return transport.handleRequest(webRequest(input), { parsedBody: body.right })
          }))
          if (Either.isLeft(response)) {
            yield* Effect.logError("MCP request failed", response.left)
            yield* release
            return rpcError(500, ErrorCode.InternalError, "the server failed to handle the MCP request")
          }
          return yield* fromWeb(response.right, release)
        })
      )

      return {
        kind: "programmatic",
        path: options.path ?? "/mcp",
        routes: [{ method: "POST", path: "/", handler: handle, body: "json" }],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: `MCP Streamable HTTP, tool ${toolName}`
      }
    }))
}

/** The channel when `AGENT_HOST_MCP=true` (see docs/MCP.md for the other settings). */
export const fromConfig: Effect.Effect<Option.Option<Channel>, ConfigError.ConfigError> = Effect.gen(function*() {
  const enabled = yield* Config.boolean("AGENT_HOST_MCP").pipe(Config.withDefault(false))
  if (!enabled) return Option.none()
  const path = yield* Config.string("AGENT_HOST_MCP_PATH").pipe(Config.withDefault("/mcp"))
  const toolName = yield* Config.string("AGENT_HOST_MCP_TOOL").pipe(Config.withDefault("ask"))
  const toolDescription = yield* Config.option(Config.string("AGENT_HOST_MCP_TOOL_DESCRIPTION"))
  const serverName = yield* Config.string("AGENT_HOST_MCP_SERVER_NAME").pipe(Config.withDefault("effect-agent-host"))
  return Option.some(make({
    path,
    toolName,
    serverName,
    ...(Option.isSome(toolDescription) ? { toolDescription: toolDescription.value } : {})
  }))
})
