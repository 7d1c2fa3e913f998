/**
 * The request edge over real HTTP: JSON routes need a JSON content type (CSRF), the host answers only for
 * loopback names when bound to loopback (DNS rebinding), and hostile JSON (deep nesting, huge arrays, invalid
 * UTF-8, lone surrogates, a session id that cannot be a header) is a 4xx with the error envelope on every JSON
 * channel, with the server still serving afterwards.
 */
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Http from "node:http"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as Telegram from "../src/channels/Telegram/Telegram.js"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { HostConfigShape } from "../src/core/HostConfig.js"
import { jsonShapeProblem } from "../src/http/HttpBody.js"
import * as FakeTelegram from "./fake/FakeTelegram.js"
import { message, SECRET, updateId } from "./fake/TelegramHarness.js"
import * as TestHost from "./utils/TestHost.js"

interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** One raw request: any bytes, any headers (including `Host`, which fetch will not set). */
const send = (
  url: string,
  options: { readonly method?: string; readonly headers?: Record<string, string>; readonly body?: string | Buffer }
) =>
  Effect.async<Reply>((resume) => {
    const target = new URL(url)
    const req = Http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: options.method ?? "POST",
        headers: options.headers ?? {}
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () =>
          resume(Effect.succeed({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8")
          })))
      }
    )
    req.on("error", (e) => resume(Effect.die(e)))
    req.end(options.body)
  })

const json = { "content-type": "application/json" }

const envelope = (reply: Reply, status: number, type?: string) => {
  assert.strictEqual(reply.status, status, reply.body)
  const body = JSON.parse(reply.body) as { error: { message: string; type: string; code?: string } }
  assert.isString(body.error.message)
  assert.isAbove(body.error.message.length, 0)
  if (type !== undefined) assert.include([body.error.type, body.error.code], type, reply.body)
  return body
}

/** A host with every JSON channel: Responses, Invocations, web chat and the Telegram webhook. */
const withHost = <A>(
  settings: Partial<HostConfigShape>,
  f: (url: string) => Effect.Effect<A>
) =>
  Effect.gen(function*() {
    const fake = yield* FakeTelegram.make()
    const telegram = Telegram.make({
      token: fake.token,
      apiBase: fake.url,
      stream: false,
      webhookUrl: "https://bot.example.test/telegram/webhook",
      secretToken: SECRET
    })
    const ctx = yield* Layer.build(
      TestHost.layer({
        channels: [Responses.make(), Invocations.make(), WebChat.make(), telegram],
        settings
      }).pipe(Layer.provide(FetchHttpClient.layer))
    ).pipe(Effect.orDie)
    return yield* f(Context.get(ctx, AgentHost).url)
  })

/** Each JSON channel's route, a valid body for it, and how it wraps a hostile value. */
const channels = [
  {
    name: "Responses",
    path: "/v1/responses",
    valid: `{"input":"hi"}`,
    wrap: (v: string) => `{"input":"hi","metadata":${v}}`
  },
  {
    name: "Invocations",
    path: "/invocations",
    valid: `{"message":"hi"}`,
    wrap: (v: string) => `{"message":"hi","x":${v}}`
  },
  {
    name: "web chat",
    path: "/webchat/messages",
    valid: `{"message":"hi","user":"user-0001"}`,
    wrap: (v: string) => `{"message":"hi","user":"user-0001","x":${v}}`
  },
  {
    name: "Telegram webhook",
    path: "/telegram/webhook",
    valid: JSON.stringify({ update_id: 1, ...message(42, "hi") }),
    wrap: (v: string) => `{"update_id":2,"x":${v}}`
  }
] as const

const headersFor = (path: string, extra: Record<string, string> = {}) => ({
  ...json,
  ...(path.startsWith("/telegram") ? { "x-telegram-bot-api-secret-token": SECRET } : {}),
  ...extra
})

const stillHealthy = (url: string) =>
  Effect.gen(function*() {
    const ready = yield* send(`${url}/readiness`, { method: "GET" })
    assert.strictEqual(ready.status, 200)
    const ok = yield* send(`${url}/invocations`, { headers: json, body: `{"message":"still there?"}` })
    assert.strictEqual(ok.status, 200, ok.body)
  })

describe("JSON routes need a JSON content type (CSRF)", () => {
  it.scoped("text/plain, form and missing content types get a 415 with the envelope on every JSON channel", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        for (const channel of channels) {
          for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
            const reply = yield* send(`${url}${channel.path}`, {
              headers: headersFor(channel.path, { "content-type": type }),
              body: channel.valid
            })
            envelope(reply, 415, "unsupported_media_type")
          }
          const none = yield* send(`${url}${channel.path}`, {
            headers: channel.path.startsWith("/telegram") ? { "x-telegram-bot-api-secret-token": SECRET } : {},
            body: channel.valid
          })
          envelope(none, 415, "unsupported_media_type")
        }
        // JSON with parameters, and +json types, are JSON.
        for (const type of ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"]) {
          const reply = yield* send(`${url}/invocations`, {
            headers: { "content-type": type },
            body: `{"message":"hi"}`
          })
          assert.strictEqual(reply.status, 200, `${type}: ${reply.body}`)
        }
        const telegram = yield* send(`${url}/telegram/webhook`, {
          headers: headersFor("/telegram"),
          body: JSON.stringify({ update_id: updateId(), ...message(42, "hi") })
        })
        assert.strictEqual(telegram.status, 200, telegram.body)
      })))

  it.scoped("no CORS: a preflight and a cross-origin post get no access-control-allow-origin", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        const preflight = yield* send(`${url}/invocations`, {
          method: "OPTIONS",
          headers: {
            origin: "https://evil.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type"
          }
        })
        assert.isUndefined(preflight.headers["access-control-allow-origin"])
        const post = yield* send(`${url}/invocations`, {
          headers: { ...json, origin: "https://evil.example" },
          body: `{"message":"hi"}`
        })
        assert.isUndefined(post.headers["access-control-allow-origin"])
      })))
})

describe("Host header (DNS rebinding)", () => {
  it.scoped("bound to loopback, only loopback names are served; AGENT_HOST_ALLOWED_HOSTS adds names", () =>
    withHost({ allowedHosts: ["agent.internal"] }, (url) =>
      Effect.gen(function*() {
        for (const host of ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example"]) {
          const rebound = yield* send(`${url}/invocations`, { headers: { ...json, host }, body: `{"message":"hi"}` })
          envelope(rebound, 421, "misdirected_request")
          const get = yield* send(`${url}/`, { method: "GET", headers: { host } })
          envelope(get, 421, "misdirected_request")
        }
        for (
          const host of [
            "localhost",
            "localhost:8000",
            "127.0.0.1",
            "127.0.0.1:1234",
            "[::1]",
            "[::1]:80",
            "agent.internal:9"
          ]
        ) {
          const ok = yield* send(`${url}/invocations`, { headers: { ...json, host }, body: `{"message":"hi"}` })
          assert.strictEqual(ok.status, 200, `${host}: ${ok.body}`)
        }
      })))

  it.scoped("bound to loopback without an allowlist, a foreign name is refused on every route", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        envelope(yield* send(`${url}/readiness`, { method: "GET", headers: { host: "agent.internal" } }), 421)
        assert.strictEqual((yield* send(`${url}/readiness`, { method: "GET" })).status, 200)
      })))
})

const deep = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
const deepObject = (levels: number) => "{\"a\":".repeat(levels) + "1" + "}".repeat(levels)
const items = (count: number) => `[${Array.from({ length: count }, () => `{"role":"user","content":"x"}`).join(",")}]`

describe("hostile JSON is a 4xx with the envelope on every JSON channel, and the server keeps serving", () => {
  it.scoped("10k and 50k levels of nesting", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        for (const channel of channels) {
          for (const body of [deep(10_000), deepObject(10_000), deep(50_000), deepObject(50_000)]) {
            const reply = yield* send(`${url}${channel.path}`, {
              headers: headersFor(channel.path),
              body: channel.wrap(body)
            })
            envelope(reply, 400, "json_too_complex")
          }
        }
        yield* stillHealthy(url)
      })))

  it.scoped("20k input items (and any array or object over AGENT_HOST_MAX_JSON_ITEMS)", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        const reply = yield* send(`${url}/v1/responses`, { headers: json, body: `{"input":${items(20_000)}}` })
        envelope(reply, 400, "json_too_complex")
        for (const channel of channels) {
          const many = yield* send(`${url}${channel.path}`, {
            headers: headersFor(channel.path),
            body: channel.wrap(items(1_001))
          })
          envelope(many, 400, "json_too_complex")
        }
        // At the limit is fine.
        const fine = yield* send(`${url}/v1/responses`, { headers: json, body: `{"input":${items(1_000)}}` })
        assert.strictEqual(fine.status, 200, fine.body.slice(0, 300))
        yield* stillHealthy(url)
      })))

  it.scoped("the limits are configurable", () =>
    withHost({ maxJsonDepth: 3, maxJsonItems: 2 }, (url) =>
      Effect.gen(function*() {
        envelope(yield* send(`${url}/invocations`, { headers: json, body: `{"message":"hi","x":[[[1]]]}` }), 400)
        envelope(yield* send(`${url}/invocations`, { headers: json, body: `{"message":"hi","x":[1,2,3]}` }), 400)
        const ok = yield* send(`${url}/invocations`, { headers: json, body: `{"message":"hi","x":[1]}` })
        assert.strictEqual(ok.status, 200, ok.body)
      })))

  it.scoped("invalid UTF-8 and lone surrogate escapes", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        for (const channel of channels) {
          const valid = Buffer.from(channel.valid)
          const at = valid.indexOf("hi")
          for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
            const body = Buffer.concat([valid.subarray(0, at), Buffer.from(bad), valid.subarray(at)])
            const reply = yield* send(`${url}${channel.path}`, { headers: headersFor(channel.path), body })
            envelope(reply, 400, "invalid_encoding")
          }
          for (const escape of ["\\ud800", "\\udc00", "\\ud800x", "\\ud800\\u0041"]) {
            const reply = yield* send(`${url}${channel.path}`, {
              headers: headersFor(channel.path),
              body: channel.valid.replace("hi", `hi${escape}`)
            })
            envelope(reply, 400, "invalid_encoding")
          }
        }
        // A proper pair is fine.
        const pair = yield* send(`${url}/invocations`, { headers: json, body: `{"message":"hi \\ud83d\\ude00"}` })
        assert.strictEqual(pair.status, 200, pair.body)
        assert.include(JSON.parse(pair.body).response, "hi 😀")
        yield* stillHealthy(url)
      })))

  it.scoped("a session id that cannot be a header is refused (Invocations echoes it in x-session-id)", () =>
    withHost({}, (url) =>
      Effect.gen(function*() {
        for (const session of ["é€", "a\nb", "a\rb", " padded ", "tab\there", "x".repeat(201)]) {
          for (const stream of [true, false]) {
            const reply = yield* send(`${url}/invocations`, {
              headers: json,
              body: JSON.stringify({ message: "hi", session_id: session, stream })
            })
            envelope(reply, 422, "invalid_request")
          }
        }
        const ok = yield* send(`${url}/invocations`, {
          headers: json,
          body: JSON.stringify({ message: "hi", session_id: "user 42/a:b", stream: true })
        })
        assert.strictEqual(ok.status, 200)
        assert.strictEqual(ok.headers["x-session-id"], "user 42/a:b")
        yield* stillHealthy(url)
      })))
})

describe("jsonShapeProblem", () => {
  it("ignores brackets, commas and escaped quotes inside strings", () => {
    assert.isUndefined(jsonShapeProblem(`{"a":"[[[[,,,,\\"[[[","b":["]]]"]}`, 2, 2))
    assert.isDefined(jsonShapeProblem(`[[[1]]]`, 2, 10))
    assert.isUndefined(jsonShapeProblem(`[[1]]`, 2, 10))
    assert.isDefined(jsonShapeProblem(`[1,2,3]`, 5, 2))
    assert.isUndefined(jsonShapeProblem(`[1,2]`, 5, 2))
    assert.isUndefined(jsonShapeProblem(`"\\\\ud800"`, 5, 2))
  })
})
