/**
 * WebSocket mode (`GET /v1/responses` with `Upgrade: websocket`): the client sends `response.create` events
 * (a create body with `"type": "response.create"`) as JSON text frames; the server answers each with the same
 * streaming events as SSE, one JSON text frame each, ending with the terminal event.
 *
 * - One response at a time per connection: a `response.create` while one runs gets an `error` event
 *   (`response_already_in_flight`) and changes nothing; the client sends the next after the terminal event.
 * - A connection-local cache of the responses made on this socket (most recent `maxCached`) lets a `store: false`
 *   response be continued with `previous_response_id` on the same socket; stored responses are found as over
 *   HTTP. A miss is an `error` event `previous_response_not_found` (status 404); a continuation that fails (refused,
 *   or a `failed` response) evicts the entry it named, so retrying it is a miss too.
 * - Problems are `error` events (`{ type: "error", status, error: { type, code, message, param } }`); the socket
 *   stays open. Frames past the host's body limit close it (1009), as does a peer that misses a ping (every
 *   `pingInterval`, it must answer with a pong before the next).
 * - When the host drains, an idle socket is closed at once, a busy one after its response ends (1001).
 * - A client that goes away mid-response leaves the turn running: its response is stored as over HTTP.
 */
import type { HttpServerResponse } from "@effect/platform"
import type { Duration } from "effect"
import { Effect, Either, FiberSet, Option } from "effect"
import type { RawData, WebSocket } from "ws"
import type { RouteInput, UpgradeRoute } from "../../core/Channel.js"
import { acceptWebSocket } from "../../core/Channel.js"
import { jsonShapeProblem } from "../../http/HttpBody.js"
import type { IncomingRequest } from "../../http/IncomingRequest.js"
import type { RenderedEvent } from "./Render.js"
import type { Previous, Refusal } from "./Wire.js"
import { callIdsOf, errorType } from "./Wire.js"

type Obj = Record<string, unknown>

/** A started response: its id and session, and its rendering into the socket. */
export interface StartedTurn {
  readonly id: string
  readonly sessionKey: string
  /** Renders into `publish`; the final resource, or none when interrupted (the socket closed). */
  readonly run: (publish: (events: ReadonlyArray<RenderedEvent>) => Effect.Effect<void>) => Effect.Effect<
    Option.Option<Obj>
  >
}

/** What the socket needs of the channel. */
export interface SocketTools {
  readonly authorized: (request: IncomingRequest) => boolean
  readonly unauthorized: HttpServerResponse.HttpServerResponse
  /** Validates a create body and starts its turn. */
  readonly start: (
    body: Obj,
    input: RouteInput,
    previous: (id: string) => Effect.Effect<Option.Option<Previous>>
  ) => Effect.Effect<Either.Either<StartedTurn, Refusal>>
  /** A stored response as a continuation sees it. */
  readonly stored: (id: string, input: RouteInput) => Effect.Effect<Option.Option<Previous>>
  readonly draining: Effect.Effect<void>
  readonly maxJsonDepth: number
  readonly maxJsonItems: number
  readonly pingInterval: Duration.Duration
  /** Responses a connection remembers for continuation (the most recent). */
  readonly maxCached: number
  /** Bytes a slow reader may leave unsent before its connection is cut. */
  readonly maxBuffered: number
}

/** A WebSocket `error` event (the Open Responses `WebSocketErrorEvent`). */
export const errorEvent = (refusal: Refusal): string =>
  JSON.stringify({
    type: "error",
    status: refusal.status,
    error: { type: errorType(refusal.status), code: refusal.code, message: refusal.message, param: refusal.param }
  })

const problem = (message: string, code = "invalid_request", param: string | null = null, status = 400): Refusal => ({
  status,
  code,
  message,
  param
})

const textOf = (data: RawData): string =>
  Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8")

/** The `response.create` body of a text frame (the HTTP-only `stream` fields dropped), or why it is not one. */
const parseFrame = (text: string, tools: SocketTools): Either.Either<Obj, Refusal> => {
  const shape = jsonShapeProblem(text, tools.maxJsonDepth, tools.maxJsonItems)
  if (shape !== undefined) {
    return Either.left(
      problem(shape.message, shape._tag === "JsonTooComplex" ? "json_too_complex" : "invalid_encoding")
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    return Either.left(
      problem(
        `the message is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
        "invalid_json"
      )
    )
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return Either.left(problem("a message must be a JSON object: {\"type\": \"response.create\", ...}"))
  }
  const { stream: _stream, stream_options: _options, type, ...body } = parsed as Obj
  if (type !== "response.create") {
    return Either.left(problem(
      `unsupported event type ${JSON.stringify(type)}: send {"type": "response.create", ...} with a create body`,
      "invalid_request",
      "type"
    ))
  }
  return Either.right(body)
}

/** The connection: runs until the socket closes. */
const connection = (tools: SocketTools, input: RouteInput, socket: WebSocket): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    // Responses made here, for continuation; a Map keeps insertion order, so the first key is the oldest.
    const cache = new Map<string, Previous>()
    let busy = false
    let closing = false
    let alive = true
    const runFork = yield* FiberSet.makeRuntime<never>()

    const send = (text: string) => {
      if (socket.readyState !== socket.OPEN) return
      if (socket.bufferedAmount > tools.maxBuffered) {
        // It reads slower than the agent writes, by more than the bound: it cannot keep up.
        socket.terminate()
        return
      }
      socket.send(text)
    }
    const goAway = () => socket.close(1001, "server shutting down")

    const remember = (id: string, previous: Previous) => {
      cache.delete(id)
      cache.set(id, previous)
      while (cache.size > tools.maxCached) cache.delete(cache.keys().next().value!)
    }
    const lookup = (id: string): Effect.Effect<Option.Option<Previous>> => {
      const hit = cache.get(id)
      return hit !== undefined ? Effect.succeed(Option.some(hit)) : tools.stored(id, input)
    }

    const handle = (body: Obj) =>
      Effect.gen(function*() {
        const previousId = typeof body["previous_response_id"] === "string" ? body["previous_response_id"] : undefined
        const started = yield* tools.start(body, input, lookup)
        if (Either.isLeft(started)) {
          if (previousId !== undefined) cache.delete(previousId)
          return send(errorEvent(started.left))
        }
        const turn = started.right
        const final = yield* turn.run((events) =>
          Effect.sync(() => {
            for (const event of events) send(event.json)
          })
        )
        if (Option.isNone(final)) return
        if (final.value["status"] === "failed") {
          if (previousId !== undefined) cache.delete(previousId)
          return
        }
        remember(turn.id, { sessionKey: turn.sessionKey, callIds: callIdsOf(final.value) })
      }).pipe(
        Effect.ensuring(Effect.sync(() => {
          busy = false
          if (closing) goAway()
        }))
      )

    socket.on("error", () => socket.terminate())
    socket.on("pong", () => {
      alive = true
    })
    socket.on("message", (data, isBinary) => {
      if (isBinary) return send(errorEvent(problem("send response.create events as JSON text frames, not binary")))
      const parsed = parseFrame(textOf(data), tools)
      if (Either.isLeft(parsed)) return send(errorEvent(parsed.left))
      if (closing) {
        return send(
          errorEvent(problem("the server is shutting down; reconnect shortly", "server_shutting_down", null, 503))
        )
      }
      if (busy) {
        return send(errorEvent(problem(
          "a response is already in progress on this connection: send the next response.create after its terminal event",
          "response_already_in_flight",
          null,
          409
        )))
      }
      busy = true
      runFork(handle(parsed.right))
    })

    // Keepalive: a peer that did not answer the last ping is gone.
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.sleep(tools.pingInterval),
      Effect.sync(() => {
        if (!alive) return socket.terminate()
        alive = false
        socket.ping()
      })
    )))
    yield* Effect.forkScoped(Effect.zipRight(
      tools.draining,
      Effect.sync(() => {
        closing = true
        if (!busy) goAway()
      })
    ))
    yield* Effect.async<void>((resume) => {
      if (socket.readyState === socket.CLOSED) return resume(Effect.void)
      socket.once("close", () => resume(Effect.void))
    })
  }))

/** The WebSocket endpoint at `path` (the same path as `POST` creates). */
export const endpoint = (path: string, tools: SocketTools): UpgradeRoute => ({
  path,
  handler: (input) =>
    Effect.succeed(
      tools.authorized(input.request) ?
        acceptWebSocket((socket) => connection(tools, input, socket)) :
        tools.unauthorized
    )
})
