import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as TestHost from "./utils/TestHost.js"

const call = (url: string, init: RequestInit = {}) =>
  Effect.promise(() =>
    fetch(url, init).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() }))
  )

const invoke = (url: string, headers: Record<string, string> = {}) =>
  call(`${url}/invocations`, {
    method: "POST",
    body: JSON.stringify({ message: "hi" }),
    headers: { "content-type": "application/json", ...headers }
  })

describe("request ids", () => {
  layer(TestHost.layer({ channels: [Invocations.make()] }))((it) => {
    it.effect("every response carries x-request-id: the caller's when sane, else a fresh one", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const ok = yield* invoke(host.url)
        const missing = yield* call(`${host.url}/nowhere`)
        const options = yield* call(`${host.url}/invocations`, { method: "OPTIONS" })
        const ids = [ok, missing, options].map((r) => r.headers.get("x-request-id") ?? "")
        for (const id of ids) assert.match(id, /^req_[0-9a-f]{32}$/)
        assert.strictEqual(new Set(ids).size, 3)
        assert.strictEqual(missing.status, 404)
        // No CORS by default: a preflight is not answered, no CORS headers anywhere.
        assert.strictEqual(options.status, 405)
        assert.isNull(ok.headers.get("access-control-allow-origin"))
        const given = yield* invoke(host.url, { "x-request-id": "trace-42/abc" })
        assert.strictEqual(given.headers.get("x-request-id"), "trace-42/abc")
        for (const bad of ["x".repeat(129), "has space", "tab\there"]) {
          const answer = yield* invoke(host.url, { "x-request-id": bad })
          assert.match(answer.headers.get("x-request-id") ?? "", /^req_[0-9a-f]{32}$/)
        }
      }))
  })
})

describe("CORS", () => {
  layer(TestHost.layer({
    channels: [Invocations.make()],
    settings: { corsOrigins: ["https://app.example.com", "http://localhost:5173"] }
  }))((it) => {
    it.effect("allowed origins get CORS headers and preflights; others get none", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const preflight = yield* call(`${host.url}/invocations`, {
          method: "OPTIONS",
          headers: {
            origin: "https://app.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os"
          }
        })
        assert.strictEqual(preflight.status, 204)
        assert.strictEqual(preflight.headers.get("access-control-allow-origin"), "https://app.example.com")
        assert.include(preflight.headers.get("access-control-allow-methods") ?? "", "POST")
        const allowHeaders = preflight.headers.get("access-control-allow-headers") ?? ""
        for (const h of ["authorization", "content-type", "x-request-id", "openai-beta", "x-stainless-os"]) {
          assert.include(allowHeaders, h)
        }
        assert.strictEqual(preflight.headers.get("access-control-max-age"), "600")
        assert.include(preflight.headers.get("vary") ?? "", "origin")
        assert.isNotNull(preflight.headers.get("x-request-id"))

        const actual = yield* invoke(host.url, { origin: "http://localhost:5173" })
        assert.strictEqual(actual.status, 200)
        assert.strictEqual(actual.headers.get("access-control-allow-origin"), "http://localhost:5173")
        assert.include(actual.headers.get("access-control-expose-headers") ?? "", "x-request-id")

        const other = yield* invoke(host.url, { origin: "https://evil.example" })
        assert.strictEqual(other.status, 200)
        assert.isNull(other.headers.get("access-control-allow-origin"))
        assert.include(other.headers.get("vary") ?? "", "origin")
        const otherPreflight = yield* call(`${host.url}/invocations`, {
          method: "OPTIONS",
          headers: { origin: "https://evil.example", "access-control-request-method": "POST" }
        })
        assert.strictEqual(otherPreflight.status, 403)
        assert.isNull(otherPreflight.headers.get("access-control-allow-origin"))
        assert.strictEqual(JSON.parse(otherPreflight.body).error.code, "cors_denied")
      }))
  })

  layer(TestHost.layer({ channels: [Invocations.make()], settings: { corsOrigins: ["*"] } }))((it) => {
    it.effect("* allows any origin", () =>
      Effect.gen(function*() {
        const host = yield* AgentHost
        const answer = yield* invoke(host.url, { origin: "https://anything.example" })
        assert.strictEqual(answer.headers.get("access-control-allow-origin"), "*")
      }))
  })

  layer(TestHost.layer({ channels: [] }))((it) => {
    it.effect("AGENT_HOST_CORS_ORIGINS is parsed and checked", () =>
      Effect.gen(function*() {
        const read = (value: string) =>
          Effect.either(Effect.withConfigProvider(
            HostConfig.config,
            ConfigProvider.fromMap(new Map([["AGENT_HOST_CORS_ORIGINS", value]]))
          ))
        const ok = yield* read(" https://a.example , http://localhost:3000,* ")
        assert.deepStrictEqual(Either.getOrThrow(ok).corsOrigins, ["https://a.example", "http://localhost:3000", "*"])
        for (const bad of ["https://a.example/path", "not a url", "a.example"]) {
          assert.isTrue(Either.isLeft(yield* read(bad)), bad)
        }
        const unset = yield* Effect.withConfigProvider(HostConfig.config, ConfigProvider.fromMap(new Map()))
        assert.deepStrictEqual(unset.corsOrigins, [])
      }))
  })
})
