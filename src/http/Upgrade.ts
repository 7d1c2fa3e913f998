/**
 * WebSocket upgrades for the host's `node:http` server (its `upgrade` event): the host's checks and the route
 * lookup run synchronously (`route`), the channel's handler decides (refuse with an HTTP response, or accept),
 * and an accepted socket is handed to the channel's `open`, which runs for the connection's life.
 *
 * One `ws` server in `noServer` mode does the handshakes: frames are bounded by `maxPayload` (a bigger frame
 * closes the connection with 1009), per-message compression is off (its memory per socket is unbounded).
 */
import type { HttpServerResponse } from "@effect/platform"
import { Cause, Effect, Runtime } from "effect"
import * as Http from "node:http"
import type { Duplex } from "node:stream"
import type { WebSocketServer } from "ws"
import type { WebSocketAccept } from "../core/Channel.js"
import { isWebSocketAccept } from "../core/Channel.js"
import { errorJson } from "./HttpBody.js"
import type { IncomingRequest } from "./IncomingRequest.js"
import { fromNode } from "./IncomingRequest.js"

/**
 * A matched upgrade route: the handler deciding it, and what to name it in logs. The accepted connection's
 * `open` runs until it returns; the socket is cut then.
 */
export interface UpgradeHandle {
  readonly route: string
  readonly channel: string
  readonly handler: Effect.Effect<HttpServerResponse.HttpServerResponse | WebSocketAccept>
  /** Wraps the connection's `open` (the request's isolation keys, grants), as the handler was wrapped. */
  readonly wrap: (open: Effect.Effect<void>) => Effect.Effect<void>
}

export type UpgradeRouted = HttpServerResponse.HttpServerResponse | UpgradeHandle

export interface Options {
  readonly runtime: Runtime.Runtime<never>
  /** Synchronous: the host's checks and the route lookup. */
  readonly route: (request: IncomingRequest) => UpgradeRouted
  /** Largest frame (message) accepted, in bytes. */
  readonly maxPayload: number
}

export type UpgradeListener = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => void

export interface Upgrades {
  readonly listener: UpgradeListener
  /** Closes every open WebSocket (a close frame with `code`); they end once the peer answers. */
  readonly closeAll: (code: number, reason: string) => void
  /** Cuts every WebSocket still open. */
  readonly terminateAll: () => void
}

const isRefusal = (
  u: HttpServerResponse.HttpServerResponse | WebSocketAccept
): u is HttpServerResponse.HttpServerResponse => !isWebSocketAccept(u)

/** Writes `response` as the HTTP answer to an upgrade request on the raw socket, then ends it. */
const refuse = (socket: Duplex, response: HttpServerResponse.HttpServerResponse): void => {
  if (socket.destroyed) return
  const body = response.body._tag === "Uint8Array" ?
    response.body.body :
    response.body._tag === "Raw" && typeof response.body.body === "string" ?
    Buffer.from(response.body.body, "utf8") :
    new Uint8Array(0)
  let head = `HTTP/1.1 ${response.status} ${Http.STATUS_CODES[response.status] ?? ""}\r\n`
  const headers: Record<string, string> = {
    ...(response.headers as Record<string, string>),
    "content-length": String(body.byteLength),
    connection: "close"
  }
  if (response.body._tag === "Uint8Array" && headers["content-type"] === undefined) {
    headers["content-type"] = response.body.contentType
  }
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`
  socket.end(Buffer.concat([Buffer.from(`${head}\r\n`, "latin1"), body]))
}

const failed = errorJson(500, "server_error", "the server failed to handle the request")
const serverError = (socket: Duplex) => refuse(socket, failed)

export const make = (options: Options): Upgrades => {
  // `ws` is imported on the first accepted upgrade, not at startup (most hosts never see one): evaluating it is a
  // few ms of a cold start. `wss` is set once it is loaded; until then there is no WebSocket to close.
  let wss: WebSocketServer | undefined
  const load = Effect.promise(() => import("ws")).pipe(
    Effect.map(({ WebSocketServer }) =>
      wss ??= new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, perMessageDeflate: false })
    )
  )
  const server = Effect.suspend(() => wss === undefined ? load : Effect.succeed(wss))
  const runFork = Runtime.runFork(options.runtime)

  const listener: UpgradeListener = (nodeRequest, socket, head) => {
    // Nothing else listens on the socket now: an error must not reach the process.
    socket.on("error", () => socket.destroy())
    const request = fromNode(nodeRequest)
    let routed: UpgradeRouted
    try {
      routed = options.route(request)
    } catch (error) {
      serverError(socket)
      runFork(Effect.logError("upgrade routing failed", Cause.die(error)))
      return
    }
    if (!("handler" in routed)) return refuse(socket, routed)
    const handle = routed
    runFork(
      Effect.matchCauseEffect(handle.handler, {
        onFailure: (cause) =>
          Effect.zipRight(
            Effect.sync(() => serverError(socket)),
            Effect.logError("upgrade failed", cause).pipe(
              Effect.annotateLogs({ channel: handle.channel, route: handle.route })
            )
          ),
        onSuccess: (decided) =>
          isRefusal(decided) ? Effect.sync(() => refuse(socket, decided)) : Effect.map(server, (wss) => {
            if (socket.destroyed) return
            wss.handleUpgrade(nodeRequest, socket, head, (ws) => {
              runFork(
                handle.wrap(decided.open(ws)).pipe(
                  Effect.catchAllCause((cause) =>
                    Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("websocket connection failed", cause)
                  ),
                  Effect.ensuring(Effect.sync(() => ws.terminate())),
                  Effect.annotateLogs({ channel: handle.channel, route: handle.route })
                )
              )
            })
          })
      })
    )
  }

  return {
    listener,
    closeAll: (code, reason) => {
      for (const ws of wss?.clients ?? []) ws.close(code, reason)
    },
    terminateAll: () => {
      for (const ws of wss?.clients ?? []) ws.terminate()
    }
  }
}
