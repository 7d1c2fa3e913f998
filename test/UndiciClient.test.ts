/**
 * The channels' outgoing `HttpClient` (`http/UndiciClient`, what `Server.ts` composes) against a real server on
 * loopback: JSON in and out, a status it does not turn into an error, redirects handed back rather than followed,
 * and a first call interrupted while undici loads leaves the client working.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer } from "effect"
import * as Http from "node:http"
import * as UndiciClient from "../src/http/UndiciClient.js"

interface Seen {
  readonly method: string
  readonly url: string
  readonly body: string
}

/** A loopback server: `/json` echoes the request, `/moved` redirects, `/hold` answers when `release` is called. */
interface Server {
  readonly base: string
  readonly seen: Array<Seen>
  /** Answers the requests `/hold` is holding. */
  readonly release: () => void
  readonly close: () => void
}

const server = Effect.acquireRelease(
  Effect.async<Server>((resume) => {
    const seen: Array<Seen> = []
    const held: Array<Http.ServerResponse> = []
    const http = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        seen.push({ method: request.method ?? "", url: request.url ?? "", body })
        if (request.url === "/moved") {
          response.writeHead(302, { location: "/json" }).end()
        } else if (request.url === "/hold") {
          held.push(response)
        } else if (request.url === "/missing") {
          response.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ ok: false }))
        } else {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(
            JSON.stringify({ ok: true, method: request.method, body: body === "" ? null : JSON.parse(body) })
          )
        }
      })
    })
    http.listen(0, "127.0.0.1", () => {
      const { port } = http.address() as { readonly port: number }
      resume(Effect.succeed({
        base: `http://127.0.0.1:${port}`,
        seen,
        release: () => {
          for (const response of held.splice(0)) response.writeHead(200).end("{}")
        },
        close: () => http.close()
      }))
    })
  }),
  (s) => Effect.sync(() => s.close())
)

const withClient = <A, E>(use: (client: HttpClient.HttpClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(
    Layer.build(UndiciClient.layer),
    (context) => Effect.flatMap(Effect.provide(HttpClient.HttpClient, context), use)
  )

describe("UndiciClient", () => {
  it.scoped("sends JSON and reads JSON; a 404 is a response, not an error; a redirect is handed back", () =>
    Effect.gen(function*() {
      const { base, seen } = yield* server
      yield* withClient((client) =>
        Effect.gen(function*() {
          const posted = yield* client.execute(
            HttpClientRequest.post(`${base}/json`).pipe(HttpClientRequest.bodyUnsafeJson({ chat_id: 7, text: "hi" }))
          ).pipe(Effect.flatMap((response) => response.json))
          assert.deepStrictEqual(posted, { ok: true, method: "POST", body: { chat_id: 7, text: "hi" } })
          const got = yield* client.get(`${base}/json`)
          assert.strictEqual(got.status, 200)
          assert.deepStrictEqual(yield* got.json, { ok: true, method: "GET", body: null })
          const missing = yield* client.get(`${base}/missing`)
          assert.strictEqual(missing.status, 404)
          const moved = yield* client.get(`${base}/moved`)
          assert.strictEqual(moved.status, 302)
          assert.strictEqual(moved.headers["location"], "/json")
        })
      )
      // The redirect was not followed: /moved was asked once, /json only by the two calls above.
      assert.deepStrictEqual(seen.map((s) => `${s.method} ${s.url}`), [
        "POST /json",
        "GET /json",
        "GET /missing",
        "GET /moved"
      ])
    }))

  it.scoped("a first call interrupted while undici loads, or while it waits, leaves the client working", () =>
    Effect.gen(function*() {
      const { base, release, seen } = yield* server
      yield* withClient((client) =>
        Effect.gen(function*() {
          // Interrupted as soon as it has started: it is loading undici then.
          const loading = yield* Effect.fork(client.get(`${base}/json`))
          yield* Effect.yieldNow()
          yield* Fiber.interrupt(loading)
          // Interrupted while the server holds its request.
          const asked = yield* Deferred.make<void>()
          const waiting = yield* Effect.fork(
            Effect.zipRight(Deferred.succeed(asked, undefined), client.get(`${base}/hold`))
          )
          yield* Deferred.await(asked)
          yield* Fiber.interrupt(waiting)
          release()
          const after = yield* client.get(`${base}/json`)
          assert.strictEqual(after.status, 200)
          assert.deepStrictEqual(yield* after.json, { ok: true, method: "GET", body: null })
        })
      )
      assert.include(seen.map((s) => s.url), "/json")
    }))
})
