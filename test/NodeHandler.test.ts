import { HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { Scope, Tracer } from "effect"
import { Deferred, Effect, Fiber, FiberRef, Logger, Stream } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { currentClientShield } from "../src/http/ClientShield.js"
import { json } from "../src/http/HttpBody.js"
import * as NodeHandler from "../src/http/NodeHandler.js"
import * as CollectingTracer from "./utils/CollectingTracer.js"

interface Logged {
  readonly level: string
  readonly message: string
}

/** A real server on 127.0.0.1 running `route` through the listener; logs are collected. */
const serve = (
  route: NodeHandler.Options["route"],
  options: { readonly closing?: () => boolean; readonly tracing?: boolean; readonly tracer?: Tracer.Tracer } = {}
): Effect.Effect<{ readonly port: number; readonly logs: Array<Logged> }, never, Scope.Scope> => {
  const logs: Array<Logged> = []
  const logger = Logger.make(({ logLevel, message }) => {
    logs.push({ level: logLevel.label, message: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
  })
  const start = Effect.gen(function*() {
    const listener = NodeHandler.make({
      runtime: yield* Effect.runtime<never>(),
      route,
      closing: options.closing ?? (() => false),
      tracing: options.tracing ?? false
    })
    const server = Http.createServer(listener)
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    return { port: (server.address() as AddressInfo).port, logs }
  })
  const logged = Effect.provide(start, Logger.replace(Logger.defaultLogger, logger))
  return options.tracer === undefined ? logged : Effect.withTracer(logged, options.tracer)
}

interface Answer {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

const request = (
  port: number,
  path: string,
  method = "GET",
  agent: Http.Agent | false = false
): Effect.Effect<Answer> =>
  Effect.async<Answer>((resume) => {
    const req = Http.request({ host: "127.0.0.1", port, path, method, agent }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resume(Effect.succeed({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8")
        })))
    })
    req.end()
  })

/** Starts a request and hands back the client request, to abort it. */
const open = (port: number, path: string): Http.ClientRequest => {
  const req = Http.request({ host: "127.0.0.1", port, path, agent: false })
  req.on("error", () => {})
  req.end()
  return req
}

const handle = (handler: NodeHandler.Handle["handler"], route = "/run"): NodeHandler.Handle => ({
  route,
  channel: "test",
  handler
})

describe("NodeHandler", () => {
  it.scoped("writes immediate and routed responses; HEAD gets the headers only", () =>
    Effect.gen(function*() {
      const { port } = yield* serve((request) =>
        request.url === "/now" ?
          json({ now: true }, 418) :
          handle(Effect.succeed(json({ ran: request.method, url: request.url })))
      )
      const now = yield* request(port, "/now")
      assert.strictEqual(now.status, 418)
      assert.deepStrictEqual(JSON.parse(now.body), { now: true })
      const ran = yield* request(port, "/run?x=1", "POST")
      assert.strictEqual(ran.status, 200)
      assert.strictEqual(ran.headers["content-type"], "application/json")
      assert.deepStrictEqual(JSON.parse(ran.body), { ran: "POST", url: "/run?x=1" })
      const head = yield* request(port, "/run", "HEAD")
      assert.strictEqual(head.status, 200)
      assert.strictEqual(
        head.headers["content-length"],
        String(Buffer.byteLength(JSON.stringify({ ran: "HEAD", url: "/run" })))
      )
      assert.strictEqual(head.body, "")
    }))

  it.scoped("a handler runs in a request fiber (a turn may run inline there); a fiber it forks is not one", () =>
    Effect.gen(function*() {
      const shield = Effect.map(FiberRef.get(currentClientShield), (cell) => cell.state)
      const { port } = yield* serve(() =>
        handle(Effect.gen(function*() {
          const own = yield* shield
          const forked = yield* Fiber.join(yield* Effect.fork(shield))
          return json({ own, forked })
        }))
      )
      const answer = yield* request(port, "/run", "POST")
      assert.deepStrictEqual(JSON.parse(answer.body), { own: "interrupts", forked: "none" })
    }))

  it.scoped("a defect is a logged 500 with the JSON envelope", () =>
    Effect.gen(function*() {
      const { logs, port } = yield* serve(() => handle(Effect.die(new Error("boom"))))
      const answer = yield* request(port, "/run")
      assert.strictEqual(answer.status, 500)
      assert.strictEqual(JSON.parse(answer.body).error.type, "server_error")
      assert.isTrue(logs.some((l) => l.level === "ERROR" && l.message.includes("request failed")))
    }))

  it.scoped("writes the response's cookies, and connection: close while closing", () =>
    Effect.gen(function*() {
      let closing = false
      const { port } = yield* serve(
        () => handle(Effect.succeed(HttpServerResponse.unsafeSetCookie(json({ ok: true }), "session", "abc"))),
        { closing: () => closing }
      )
      const agent = yield* Effect.acquireRelease(
        Effect.sync(() => new Http.Agent({ keepAlive: true })),
        (agent) => Effect.sync(() => agent.destroy())
      )
      const first = yield* request(port, "/run", "GET", agent)
      assert.deepStrictEqual(first.headers["set-cookie"], ["session=abc"])
      assert.strictEqual(first.headers["connection"], "keep-alive")
      closing = true
      const second = yield* request(port, "/run", "GET", agent)
      assert.strictEqual(second.headers["connection"], "close")
    }))

  it.scopedLive("a stream body waits for the client (backpressure), then arrives whole and in order", () =>
    Effect.gen(function*() {
      const size = 64 * 1024
      const total = 500 // 32 MiB: far more than the socket buffers hold
      let produced = 0
      const { port } = yield* serve(() =>
        handle(Effect.succeed(HttpServerResponse.stream(
          Stream.range(1, total).pipe(
            Stream.rechunk(1),
            Stream.map((i) => {
              produced = i
              return new Uint8Array(size).fill(i % 251)
            })
          ),
          { contentType: "application/octet-stream" }
        )))
      )
      const response = yield* Effect.async<Http.IncomingMessage>((resume) => {
        const req = Http.request({ host: "127.0.0.1", port, path: "/run", agent: false }, (res) => {
          res.pause()
          resume(Effect.succeed(res))
        })
        req.end()
      })
      // While the client reads nothing, the writer stops once the socket is full.
      let seen = -1
      while (seen !== produced) {
        seen = produced
        yield* Effect.sleep("100 millis")
      }
      assert.isBelow(produced, total)
      const received = yield* Effect.async<{ bytes: number; ordered: boolean }>((resume) => {
        let bytes = 0
        let ordered = true
        response.on("data", (chunk: Buffer) => {
          for (let i = 0; i < chunk.length; i += 4096) {
            if (chunk[i] !== Math.floor((bytes + i) / size + 1) % 251) ordered = false
          }
          bytes += chunk.length
        })
        response.on("end", () => resume(Effect.succeed({ bytes, ordered })))
        response.resume()
      })
      assert.strictEqual(received.bytes, size * total)
      assert.isTrue(received.ordered)
    }))

  it.scoped("a stream that fails ends the response after what was sent, and is logged", () =>
    Effect.gen(function*() {
      const { logs, port } = yield* serve(() =>
        handle(Effect.succeed(HttpServerResponse.stream(
          Stream.concat(Stream.make(new TextEncoder().encode("first\n")), Stream.die(new Error("broken"))),
          { contentType: "text/plain" }
        )))
      )
      const answer = yield* request(port, "/run")
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.body, "first\n")
      assert.isTrue(logs.some((l) => l.level === "ERROR" && l.message.includes("response stream failed")))
    }))

  it.scoped("a client disconnect interrupts the handler only where it is interruptible", () =>
    Effect.gen(function*() {
      const waiting = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const blocked = yield* Deferred.make<void>()
      const disconnected = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const finished = yield* Deferred.make<void>()
      const { port } = yield* serve((request) => {
        if (request.url === "/interruptible") {
          return handle(Effect.zipRight(
            Deferred.succeed(waiting, undefined),
            Effect.interruptible(Effect.never).pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)))
          ))
        }
        request.source.socket.on("close", () => Deferred.unsafeDone(disconnected, Effect.void))
        return handle(Effect.gen(function*() {
          yield* Deferred.succeed(blocked, undefined)
          yield* Deferred.await(gate)
          yield* Deferred.succeed(finished, undefined)
          return json({ ok: true })
        }))
      })
      const first = open(port, "/interruptible")
      yield* Deferred.await(waiting)
      first.destroy()
      yield* Deferred.await(interrupted)

      const second = open(port, "/uninterruptible")
      yield* Deferred.await(blocked)
      second.destroy()
      // The server has seen the disconnect (and interrupted the fiber) before the handler may go on.
      yield* Deferred.await(disconnected)
      yield* Deferred.succeed(gate, undefined)
      yield* Deferred.await(finished)
    }))

  it.scoped("with tracing, a routed request runs in a server span named after its method and route", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* CollectingTracer.make
      const route = (request: { readonly url: string }) =>
        request.url === "/missing" ? json({}, 404) : handle(Effect.succeed(json({ ok: true }, 201)), "/items/:id")
      const on = yield* serve(route, { tracing: true, tracer })
      yield* request(on.port, "/items/1", "POST")
      yield* request(on.port, "/missing")
      assert.deepStrictEqual(spans.map((s) => s.name), ["http.server POST"])
      const span = spans[0]!
      assert.strictEqual(span.kind, "server")
      assert.strictEqual(span.attributes.get("http.method"), "POST")
      assert.strictEqual(span.attributes.get("http.route"), "/items/:id")
      assert.strictEqual(span.attributes.get("http.status_code"), 201)
      assert.strictEqual(span.status._tag, "Ended")

      const off = yield* serve(route, { tracing: false, tracer })
      yield* request(off.port, "/items/1", "POST")
      assert.strictEqual(spans.length, 1)
    }))
})
