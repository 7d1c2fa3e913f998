/**
 * The host's `node:http` request listener: turns a Node request into a route handler run and writes the
 * handler's `HttpServerResponse` to the Node response. It replaces the platform's `NodeHttpServer.makeHandler`,
 * whose per-request scope, error-handling layers, tracer middleware and wait for the socket's write callback
 * capped the host at about a third of raw `node:http` before any turn ran.
 *
 * Per request: a plain `IncomingRequest`, the caller's synchronous `route` (an immediate response needs no
 * fiber at all), else one fiber running the handler uninterruptibly (a client disconnect interrupts it, which
 * handlers observe only in regions they make interruptible), then the response written as soon as it is ready.
 */
import { Cookies, HttpServerError, HttpServerResponse, HttpTraceContext } from "@effect/platform"
import type { Fiber } from "effect"
import {
  Cause,
  Chunk,
  Effect,
  FiberId,
  FiberRef,
  FiberRefs,
  HashMap,
  Option,
  Runtime,
  RuntimeFlags,
  Stream
} from "effect"
import type * as Http from "node:http"
import * as ClientShield from "./ClientShield.js"
import * as Cors from "./Cors.js"
import type { IncomingRequest } from "./IncomingRequest.js"
import { fromNode } from "./IncomingRequest.js"
import * as LiveBody from "./LiveBody.js"
import * as RequestId from "./RequestId.js"

/** A matched route: the handler to run, and what to name it in logs and spans. */
export interface Handle {
  /** The route's pattern (`/v1/responses/:id`), for the request span. */
  readonly route: string
  /** The channel serving it, for logs. */
  readonly channel: string
  readonly handler: Effect.Effect<HttpServerResponse.HttpServerResponse>
}

/** What routing decided: a response to write at once (no fiber), or a handler to run. */
export type Routed = HttpServerResponse.HttpServerResponse | Handle

export interface Options {
  /** Runs each handler (its services, logger and tracer). */
  readonly runtime: Runtime.Runtime<never>
  /** Synchronous: checks and route lookup only, no Effect. */
  readonly route: (request: IncomingRequest) => Routed
  /** True while the host drains: every response written closes its connection. */
  readonly closing: () => boolean
  /**
   * A span per routed request (`http.server <METHOD>`, kind server, `http.method`, `http.route`,
   * `http.status_code`), continuing a `traceparent`/b3 parent when the request carries one. Off: no span and no
   * tracer work per request. Responses decided before a route runs (404, 405, 415, 421, 400, 503) get none.
   */
  readonly tracing: boolean
  /** Origins allowed by CORS (`*` for any); empty or absent: CORS is off (see `Cors`). */
  readonly corsOrigins?: ReadonlyArray<string>
  /**
   * Told how each routed request's handler ended, before its response is written: the response's status, 500 for
   * a failure, 499 when it was interrupted (the client went away). Synchronous: a request counter, not an Effect
   * region around every handler.
   */
  readonly onHandled?: (channel: string, status: number) => void
}

export type Listener = (request: Http.IncomingMessage, response: Http.ServerResponse) => void

const serverError = HttpServerResponse.text(
  JSON.stringify({ error: { message: "the server failed to handle the request", type: "server_error" } }),
  { status: 500, contentType: "application/json" }
)

const headersOf = (
  response: HttpServerResponse.HttpServerResponse,
  closing: boolean
): Http.OutgoingHttpHeaders => {
  let headers: Http.OutgoingHttpHeaders = response.headers
  if (!Cookies.isEmpty(response.cookies)) {
    const cookies = Cookies.toSetCookieHeaders(response.cookies)
    const own = response.headers["set-cookie"]
    headers = { ...headers, "set-cookie": own === undefined ? cookies : [...cookies, own] }
  }
  return closing ? { ...headers, connection: "close" } : headers
}

// One write for the frames of one Effect chunk (SSE frames that were ready together).
const coalesce = (chunk: Chunk.Chunk<Uint8Array>): Uint8Array | undefined => {
  const array = Chunk.toReadonlyArray(chunk)
  if (array.length === 0) return undefined
  return array.length === 1 ? array[0]! : Buffer.concat(array)
}

/** Waits until the socket takes more (or is gone: the close listener interrupts the fiber then anyway). */
const drained = (nodeResponse: Http.ServerResponse): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const done = () => {
      nodeResponse.off("drain", done)
      nodeResponse.off("close", done)
      resume(Effect.void)
    }
    nodeResponse.on("drain", done)
    nodeResponse.on("close", done)
    return Effect.sync(() => {
      nodeResponse.off("drain", done)
      nodeResponse.off("close", done)
    })
  })

/**
 * Runs a body's writing, the only interruptible part of a request (a client that goes away stops it here), then
 * ends the response: as the platform does, a failed body ends what was sent (the client sees a truncated
 * stream), and a real failure is logged.
 */
const writing = (nodeResponse: Http.ServerResponse, body: Effect.Effect<void, unknown>): Effect.Effect<void> =>
  Effect.matchCauseEffect(Effect.interruptible(body), {
    onSuccess: () => Effect.sync(() => nodeResponse.end()),
    onFailure: (cause) => {
      if (!nodeResponse.writableEnded) nodeResponse.end()
      return Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("response stream failed", cause)
    }
  })

/** Writes a stream body: every chunk as it comes, waiting for `drain` when the socket is full, then ends. */
const writeStream = (
  nodeResponse: Http.ServerResponse,
  stream: Stream.Stream<Uint8Array, unknown>
): Effect.Effect<void> =>
  writing(
    nodeResponse,
    Stream.runForEachChunk(Stream.orDie(stream), (chunk) => {
      if (nodeResponse.destroyed) return Effect.interrupt
      const data = coalesce(chunk)
      if (data === undefined || nodeResponse.write(data)) return Effect.void
      return drained(nodeResponse)
    })
  )

/**
 * Writes a live body (see `LiveBody`): its `run` writes straight to the socket in this fiber, no stream run. A
 * write after the client went away interrupts the run (the close listener interrupts the fiber anyway).
 */
const writeLive = (nodeResponse: Http.ServerResponse, run: LiveBody.Run): Effect.Effect<void> => {
  // Node corks the socket at a response's write until its next tick, which waits for every microtask: the first
  // write (the headers and first frames: the caller's time to first byte) is sent at once; later ones go out at
  // that tick together with whatever else was written by then (the rest of a turn's frames, the last frames with
  // the end of the body), one socket write instead of one per chunk.
  let first = true
  const sent = () => {
    if (first) {
      first = false
      nodeResponse.socket?.uncork()
    }
  }
  const sink: LiveBody.Sink = {
    write: (text) => {
      if (nodeResponse.destroyed) return Effect.interrupt
      const more = nodeResponse.write(text)
      sent()
      return more ? Effect.void : drained(nodeResponse)
    },
    unsafeWrite: (text) => {
      if (!nodeResponse.destroyed && !nodeResponse.writableEnded) {
        nodeResponse.write(text)
        sent()
      }
    }
  }
  return writing(nodeResponse, run(sink))
}

/**
 * Writes `response` to `nodeResponse`: synchronously for every body but a stream, whose writing is returned to
 * run in the request's fiber. Throws only what Node's writes throw (invalid header values).
 */
const write = (
  method: string,
  nodeResponse: Http.ServerResponse,
  response: HttpServerResponse.HttpServerResponse,
  closing: boolean
): Effect.Effect<void> | undefined => {
  if (nodeResponse.writableEnded) return undefined
  const headers = headersOf(response, closing)
  nodeResponse.writeHead(response.status, headers)
  if (method === "HEAD") {
    nodeResponse.end()
    return undefined
  }
  const body = response.body
  switch (body._tag) {
    case "Empty":
      nodeResponse.end()
      return undefined
    case "Uint8Array":
      // Not waiting for the write callback: the socket buffers it, and the next request need not wait.
      nodeResponse.end(body.body)
      return undefined
    case "Raw":
      if (typeof body.body === "string" || body.body instanceof Uint8Array) {
        nodeResponse.end(body.body)
        return undefined
      }
      throw new Error("a Raw response body must be a string or a Uint8Array")
    case "Stream": {
      const live = LiveBody.runOf(body.stream)
      return live === undefined ? writeStream(nodeResponse, body.stream) : writeLive(nodeResponse, live)
    }
    case "FormData":
      throw new Error("FormData response bodies are not supported")
  }
}

/** After a write threw: a 500 if nothing was sent yet, else the connection is cut (the response is broken). */
const rescue = (nodeResponse: Http.ServerResponse): void => {
  try {
    if (!nodeResponse.headersSent) {
      nodeResponse.writeHead(serverError.status, serverError.headers)
      nodeResponse.end((serverError.body as { readonly body: Uint8Array }).body)
    } else if (!nodeResponse.writableEnded) {
      nodeResponse.destroy()
    }
  } catch {
    nodeResponse.destroy()
  }
}

/** `refs` with the log annotation `request_id`. */
const annotated = (refs: FiberRefs.FiberRefs, fiberId: FiberId.Runtime, id: string): FiberRefs.FiberRefs =>
  FiberRefs.updateAs(refs, {
    fiberId,
    fiberRef: FiberRef.currentLogAnnotations,
    value: HashMap.set(FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations), "request_id", id)
  })

/** The request listener. */
export const make = (options: Options): Listener => {
  // Handlers run uninterruptibly: a client disconnect is observed only in regions a handler makes interruptible
  // (the stream writer, a turn's `onDisconnect: "cancel"` wait). The flag is off from each fiber's start, which
  // costs nothing per request (an `Effect.uninterruptible` wrapper costs two steps of the fiber).
  const runtime = Runtime.make({
    context: options.runtime.context,
    fiberRefs: FiberRefs.updateAs(options.runtime.fiberRefs, {
      fiberId: FiberId.none,
      fiberRef: ClientShield.currentClientShield,
      // Each fiber forked from it (a request's) gets a cell of its own, `interrupts` (see ClientShield).
      value: ClientShield.requests
    }),
    runtimeFlags: RuntimeFlags.disable(options.runtime.runtimeFlags, RuntimeFlags.Interruption)
  })
  const runFork = Runtime.runFork(runtime)
  const { closing, onHandled, route, tracing } = options
  const cors = Cors.make(options.corsOrigins ?? [])

  const logDetached = (message: string, error: unknown, annotations: Record<string, string>) =>
    runFork(Effect.logError(message, Cause.die(error)).pipe(Effect.annotateLogs(annotations)))

  // Writes in the fiber; a write that throws is logged and answered (or cut) instead of reaching Node.
  const respond = (
    request: IncomingRequest,
    nodeResponse: Http.ServerResponse,
    response: HttpServerResponse.HttpServerResponse,
    handle: Handle
  ): Effect.Effect<void> => {
    let written: Effect.Effect<void>
    try {
      written = write(request.method, nodeResponse, response, closing()) ?? Effect.void
    } catch (error) {
      rescue(nodeResponse)
      written = Effect.logError("response write failed", Cause.die(error)).pipe(
        Effect.annotateLogs({ channel: handle.channel, route: handle.route })
      )
    }
    return tracing ? Effect.zipRight(Effect.annotateCurrentSpan("http.status_code", response.status), written) : written
  }

  const run = (
    request: IncomingRequest,
    nodeResponse: Http.ServerResponse,
    handle: Handle
  ): Effect.Effect<void> => {
    const handled = Effect.matchCauseEffect(handle.handler, {
      onSuccess: (response) => {
        onHandled?.(handle.channel, response.status)
        return respond(request, nodeResponse, response, handle)
      },
      onFailure: (cause) => {
        // Interrupted: the client went away (nothing to answer), or the handler was stopped without a reply.
        if (Cause.isInterruptedOnly(cause)) {
          onHandled?.(handle.channel, 499)
          if (!nodeResponse.headersSent && !nodeResponse.destroyed) rescue(nodeResponse)
          return Effect.void
        }
        onHandled?.(handle.channel, 500)
        return Effect.zipRight(
          Effect.logError("request failed", cause).pipe(
            Effect.annotateLogs({ channel: handle.channel, route: handle.route })
          ),
          respond(request, nodeResponse, serverError, handle)
        )
      }
    })
    if (!tracing) return handled
    return Effect.withSpan(handled, `http.server ${request.method}`, {
      kind: "server",
      parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(request.headers)),
      captureStackTrace: false,
      attributes: { "http.method": request.method, "http.route": handle.route, "agent_host.channel": handle.channel }
    })
  }

  return (nodeRequest, nodeResponse) => {
    // Every response carries the request's id (set before anything is written, so every path below has it).
    RequestId.stamp(nodeRequest, nodeResponse)
    if (cors !== undefined && cors(nodeRequest, nodeResponse)) return
    const request = fromNode(nodeRequest)
    let routed: Routed
    try {
      routed = route(request)
    } catch (error) {
      rescue(nodeResponse)
      logDetached("request routing failed", error, { url: request.url.slice(0, 200) })
      return
    }
    let fiber: Fiber.RuntimeFiber<void>
    if (HttpServerResponse.isServerResponse(routed)) {
      let streaming: Effect.Effect<void> | undefined
      try {
        streaming = write(request.method, nodeResponse, routed, closing())
      } catch (error) {
        rescue(nodeResponse)
        logDetached("response write failed", error, { url: request.url.slice(0, 200) })
      }
      if (streaming === undefined) return
      fiber = runFork(streaming)
    } else {
      // Every line this request's fiber logs names it (the id `RequestId.stamp` set: the caller's, or a fresh one),
      // set in the fiber's refs as it is forked: no `annotateLogs` region (two ref copies and a dozen steps).
      const id = request.headers[RequestId.HEADER]
      fiber = typeof id === "string" ?
        runFork(run(request, nodeResponse, routed), { updateRefs: (refs, fiberId) => annotated(refs, fiberId, id) }) :
        runFork(run(request, nodeResponse, routed))
    }
    // Most handlers answer before runFork returns; only a response still open needs to hear of a disconnect.
    if (!nodeResponse.writableEnded) {
      nodeResponse.on("close", () => {
        // A turn running in this fiber is shielded: its caller leaving must not stop it (see ClientShield).
        if (!nodeResponse.writableEnded && ClientShield.stateOf(fiber) !== "shielded") {
          fiber.unsafeInterruptAsFork(HttpServerError.clientAbortFiberId)
        }
      })
    }
  }
}
