import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as AgentHost from "../src/core/AgentHost.js"
import { PushFailed } from "../src/core/Channel.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as AdminRoutes from "../src/delivery/AdminRoutes.js"
import * as DurablePush from "../src/delivery/DurablePush.js"
import * as StateStore from "../src/state/StateStore.js"
import * as PushChannels from "./utils/PushChannels.js"

const log: Array<PushChannels.Delivery> = []
let healthy = false

const channels = [
  AdminRoutes.make(),
  PushChannels.make("alpha", log),
  PushChannels.make("beta", log, {
    fail: () =>
      healthy ? undefined : new PushFailed({ reason: "rejected", retryable: false, message: "403 bot was blocked" })
  })
]

const hostLayer = AgentHost.layer({ channels }).pipe(
  Layer.provideMerge(HostLayers.layerCoreWith({ push: DurablePush.layerMemory })),
  Layer.provide(DefaultAgent.layer),
  Layer.provide(StateStore.layerMemory),
  Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", apiKeys: ["admin-key"] }))
)

const call = (method: string, path: string, options: { body?: unknown; key?: string } = {}) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const headers: Record<string, string> = { "content-type": "application/json" }
      if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
      const r = await fetch(`${host.url}${path}`, {
        method,
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
      })
      return { status: r.status, body: (await r.json()) as any }
    }))

const poll = <A, R>(effect: Effect.Effect<A, never, R>, ok: (a: A) => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const a = yield* effect
      if (ok(a)) return a
      yield* Effect.sleep("10 millis")
    }
    return assert.fail(`timed out waiting for ${what}`)
  })

describe("AdminRoutes", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("dead letters are listed over HTTP and replayed", () =>
      Effect.gen(function*() {
        const key = "admin-key"
        yield* call("POST", "/beta/say", { body: { text: "hi", user: "bob", session: "adm" } })
        yield* call("POST", "/alpha/say", {
          body: { text: "tell bob", user: "al", session: "adm", target: { kind: "channels", targets: ["beta"] } }
        })
        const listed = yield* poll(
          call("GET", "/admin/tasks?status=failed", { key }),
          (r) => r.body.tasks?.length === 1,
          "a dead letter"
        )
        const task = listed.body.tasks[0]
        assert.strictEqual(task.name, "hosting.push")
        assert.strictEqual(task.status, "failed")
        assert.strictEqual(task.attempts, 1)
        assert.strictEqual(task.last_error, "403 bot was blocked")
        assert.match(task.idempotency_key, /->beta:bob$/)
        assert.isUndefined(task.payload)

        const one = yield* call("GET", `/admin/tasks/${task.id}`, { key })
        assert.strictEqual(one.status, 200)
        assert.strictEqual(one.body.task.id, task.id)

        healthy = true
        const replayed = yield* call("POST", `/admin/tasks/${task.id}/replay`, { key })
        assert.strictEqual(replayed.status, 202)
        yield* poll(
          call("GET", `/admin/tasks/${task.id}`, { key }),
          (r) => r.body.task.status === "succeeded",
          "replay"
        )
        assert.deepStrictEqual(log.map((d) => [d.channel, d.nativeId, d.key]), [["beta", "bob", task.idempotency_key]])
        assert.include(log[0]!.text, "tell bob")

        const again = yield* call("POST", `/admin/tasks/${task.id}/replay`, { key })
        assert.strictEqual(again.status, 409)
        assert.include(again.body.error.message, "only failed or cancelled")
        const cancelDone = yield* call("POST", `/admin/tasks/${task.id}/cancel`, { key })
        assert.strictEqual(cancelDone.status, 409)
        const none = yield* call("GET", "/admin/tasks?status=failed", { key })
        assert.deepStrictEqual(none.body.tasks, [])
      }))

    it.effect("requires the API key and rejects bad parameters", () =>
      Effect.gen(function*() {
        assert.strictEqual((yield* call("GET", "/admin/tasks")).status, 401)
        assert.strictEqual((yield* call("GET", "/admin/tasks", { key: "wrong" })).status, 401)
        assert.strictEqual((yield* call("POST", "/admin/tasks/x/replay")).status, 401)
        const bad = yield* call("GET", "/admin/tasks?status=broken", { key: "admin-key" })
        assert.strictEqual(bad.status, 400)
        assert.include(bad.body.error.message, "status must be one of")
        assert.strictEqual((yield* call("GET", "/admin/tasks?limit=0", { key: "admin-key" })).status, 400)
        assert.strictEqual((yield* call("GET", "/admin/tasks/nope", { key: "admin-key" })).status, 404)
        assert.strictEqual((yield* call("POST", "/admin/tasks/nope/replay", { key: "admin-key" })).status, 404)
        assert.strictEqual((yield* call("POST", "/admin/tasks/nope/cancel", { key: "admin-key" })).status, 404)
        const all = yield* call("GET", "/admin/tasks?limit=10", { key: "admin-key" })
        assert.strictEqual(all.status, 200)
        assert.isArray(all.body.tasks)
      }))
  })
})

const hostWith = (settings: Partial<HostConfig.HostConfigShape>) =>
  AgentHost.layer({ channels: [AdminRoutes.make(), PushChannels.make("alpha", [])] }).pipe(
    Layer.provideMerge(HostLayers.layerCoreWith({ push: DurablePush.layerMemory })),
    Layer.provide(DefaultAgent.layer),
    Layer.provide(StateStore.layerMemory),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", ...settings }))
  )

describe("AdminRoutes access", () => {
  layer(hostWith({}), { excludeTestServices: true })((it) => {
    it.effect("with no admin or API key the admin routes are not mounted: 404, as if they did not exist", () =>
      Effect.gen(function*() {
        for (
          const [method, path] of [["GET", "/admin/tasks"], ["GET", "/admin/tasks/x"], [
            "POST",
            "/admin/tasks/x/cancel"
          ]]
        ) {
          const r = yield* call(method!, path!)
          assert.strictEqual(r.status, 404, `${method} ${path}`)
          assert.strictEqual(r.body.error.type, "not_found")
        }
        // Even a bearer of some key gets nothing: there is no key that opens them.
        assert.strictEqual((yield* call("GET", "/admin/tasks", { key: "anything" })).status, 404)
      }))
  })

  layer(hostWith({ adminKeys: ["the-admin-key"], apiKeys: ["an-api-key"] }), { excludeTestServices: true })((it) => {
    it.effect("admin keys guard the routes; an API key is not an admin key when admin keys are set", () =>
      Effect.gen(function*() {
        assert.strictEqual((yield* call("GET", "/admin/tasks")).status, 401)
        assert.strictEqual((yield* call("GET", "/admin/tasks", { key: "wrong" })).status, 401)
        const withApiKey = yield* call("GET", "/admin/tasks", { key: "an-api-key" })
        assert.strictEqual(withApiKey.status, 401)
        assert.include(withApiKey.body.error.message, "AGENT_HOST_ADMIN_KEYS")
        assert.strictEqual((yield* call("POST", "/admin/tasks/x/cancel", { key: "an-api-key" })).status, 401)
        const ok = yield* call("GET", "/admin/tasks", { key: "the-admin-key" })
        assert.strictEqual(ok.status, 200)
        assert.isArray(ok.body.tasks)
      }))
  })
})
