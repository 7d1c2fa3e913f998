/**
 * The host as `npm start` composes it (`Server.layerFromEnvWith`: environment, state, durable pushes, channels) with
 * `AGENT_HOST_STATE=postgres` on the test Postgres (a database per test), run in process, stopped and started
 * again on the same database: a stored Responses turn is continued by `previous_response_id` after the restart, a
 * push scheduled before it is delivered after it, two hosts on one database leave the task queue to one of them,
 * and readiness follows the database. Configuration errors are one line naming DATABASE_URL.
 */
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Context, Effect, Exit, Layer, Option } from "effect"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { Turn } from "../src/core/Target.js"
import * as StartupError from "../src/internal/StartupError.js"
import * as Server from "../src/Server.js"
import * as Persistence from "../src/state/Persistence.js"
import * as Fake from "./fake/FakeTelegram.js"
import { echoAgent, SECRET } from "./fake/TelegramHarness.js"
import * as Postgres from "./utils/Postgres.js"
import { freePort } from "./utils/ServerProcess.js"

const PUSH_KEY = "pg-push-key"
const CHAT = "4242"

type Obj = Record<string, unknown>

const envFor = (databaseUrl: string, fake: Fake.FakeTelegram, port: number) =>
  new Map([
    ["AGENT_HOST_STATE", "postgres"],
    ["DATABASE_URL", databaseUrl],
    ["TELEGRAM_BOT_TOKEN", fake.token],
    ["TELEGRAM_API_BASE", fake.url],
    ["TELEGRAM_WEBHOOK_URL", "https://bot.example.test/telegram/webhook"],
    ["TELEGRAM_SECRET_TOKEN", SECRET],
    ["TELEGRAM_STREAM", "false"],
    ["AGENT_HOST_PUSH_KEYS", PUSH_KEY],
    ["AGENT_HOST_WEBCHAT", "false"],
    ["AGENT_HOST_SHUTDOWN_GRACE", "1 second"],
    ["PORT", String(port)],
    ["HOST", "127.0.0.1"]
  ])

/** The host on `databaseUrl` in the current scope (stopped, pool closed, when it closes). */
const startHost = (databaseUrl: string, fake: Fake.FakeTelegram, turns: Array<Turn>) =>
  Effect.gen(function*() {
    const env = envFor(databaseUrl, fake, yield* freePort)
    const layer = Server.layerFromEnvWith(Agent.layer(echoAgent(turns))).pipe(
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
    )
    return Context.get(yield* Layer.build(layer), AgentHost)
  })

const request = (url: string, path: string, init: { readonly body?: Obj; readonly headers?: Obj } = {}) =>
  Effect.promise(() =>
    fetch(`${url}${path}`, {
      method: init.body === undefined ? "GET" : "POST",
      headers: { "content-type": "application/json", ...init.headers },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(30_000)
    }).then(async (r) => ({ status: r.status, body: await r.json() as Obj }))
  )

const respond = (url: string, body: Obj, headers: Obj = {}) =>
  Effect.map(request(url, "/v1/responses", { body, headers }), (r) => {
    assert.strictEqual(r.status, 200, JSON.stringify(r.body))
    return r.body
  })

const textOf = (response: Obj) =>
  (response["output"] as ReadonlyArray<Obj>).flatMap((item) =>
    item["type"] === "message" ? (item["content"] as ReadonlyArray<Obj>).map((c) => String(c["text"] ?? "")) : []
  ).join("")

const sentTexts = (fake: Fake.FakeTelegram) => fake.callsOf("sendMessage").map((c) => String(c.params["text"]))

describe("the server on Postgres", () => {
  it.scopedLive("a stored turn and a scheduled push survive a restart", () =>
    Effect.gen(function*() {
      const url = yield* Postgres.database
      const fake = yield* Fake.make()
      const turns: Array<Turn> = []
      // Telegram is down (429, retry after 1 s) until the first host is gone: the push stays scheduled.
      let down = true
      fake.fail("sendMessage", {
        error_code: 429,
        description: "Too Many Requests: retry after 1",
        retry_after: 1,
        when: () => down,
        times: 1_000_000
      })

      const first = yield* Effect.scoped(Effect.gen(function*() {
        const host = yield* startHost(url, fake, turns)
        const ready = yield* request(host.url, "/readiness")
        assert.strictEqual(ready.status, 200)
        assert.deepStrictEqual(ready.body["state"], { ready: true })
        const stored = yield* respond(host.url, { input: "remember me" })
        assert.strictEqual(textOf(stored), "echo: remember me (history 0)")
        yield* respond(host.url, { input: "news", response_target: `telegram:${CHAT}` }, {
          authorization: `Bearer ${PUSH_KEY}`
        })
        // attempted (and refused) at least once before the host stops
        yield* fake.waitFor("sendMessage", 1, 20_000)
        return stored
      }))
      const attempts = fake.callsOf("sendMessage").length
      down = false

      const host = yield* startHost(url, fake, turns)
      // the push scheduled by the first host is delivered by the second
      yield* fake.waitFor("sendMessage", attempts + 1, 30_000)
      assert.include(sentTexts(fake).at(-1) ?? "", "echo: news")
      // the first host's stored response is there, and the conversation continues from it
      const again = yield* request(host.url, `/v1/responses/${String(first["id"])}`)
      assert.strictEqual(again.status, 200, JSON.stringify(again.body))
      assert.strictEqual(textOf(again.body), "echo: remember me (history 0)")
      const next = yield* respond(host.url, { input: "and now?", previous_response_id: first["id"] })
      assert.strictEqual(textOf(next), "echo: and now? (history 2)")
      // delivered once: no further attempt after the delivery
      const delivered = fake.callsOf("sendMessage").length
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(fake.callsOf("sendMessage").length, delivered)
    }), { timeout: 180_000 })

  it.scopedLive(
    "two hosts on one database: the task queue stays with the first; the second reads its state",
    () =>
      Effect.gen(function*() {
        const url = yield* Postgres.database
        const fake = yield* Fake.make()
        const turns: Array<Turn> = []

        const stored = yield* Effect.scoped(Effect.gen(function*() {
          const a = yield* startHost(url, fake, turns)
          const stored = yield* respond(a.url, { input: "from a" })
          // B is refused while A holds the queue's lock, with one line saying why and what to do
          const b = yield* Effect.exit(Effect.scoped(startHost(url, fake, turns)))
          assert.isTrue(Exit.isFailure(b))
          const line = Exit.isFailure(b) ? StartupError.describeCause(b.cause) : Option.none()
          assert.isTrue(Option.isSome(line))
          assert.match(Option.getOrThrow(line), /another host runs the durable task queue on this database/)
          // ... and how to run several hosts on one database
          assert.include(Option.getOrThrow(line), "start every one of them with AGENT_HOST_CLUSTER=postgres")
          // A is undisturbed
          const next = yield* respond(a.url, { input: "still a", previous_response_id: stored["id"] })
          assert.strictEqual(textOf(next), "echo: still a (history 2)")
          return next
        }))

        // A is gone (its lock with it): B starts and reads what A wrote
        const b = yield* startHost(url, fake, turns)
        const read = yield* request(b.url, `/v1/responses/${String(stored["id"])}`)
        assert.strictEqual(read.status, 200, JSON.stringify(read.body))
        assert.strictEqual(textOf(read.body), "echo: still a (history 2)")
        const next = yield* respond(b.url, { input: "now b", previous_response_id: stored["id"] })
        assert.strictEqual(textOf(next), "echo: now b (history 4)")
      }),
    { timeout: 180_000 }
  )

  it.scopedLive(
    "readiness answers 503 naming the state database while it refuses connections",
    () =>
      Effect.gen(function*() {
        const url = yield* Postgres.database
        const fake = yield* Fake.make()
        const host = yield* startHost(url, fake, [])
        // the server's base URL and this test's database name (Postgres.database answers `<base>/<name>`)
        const base = url.slice(0, url.lastIndexOf("/"))
        const name = url.slice(url.lastIndexOf("/") + 1)
        yield* Postgres.admin(base, `ALTER DATABASE ${name} ALLOW_CONNECTIONS false`)
        yield* Postgres.admin(base, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`)
        const down = yield* request(host.url, "/readiness")
        assert.strictEqual(down.status, 503, JSON.stringify(down.body))
        assert.strictEqual((down.body["state"] as Obj)["ready"], false)
        assert.strictEqual((down.body["error"] as Obj)["type"], "state_unready")
        assert.notInclude(JSON.stringify(down.body), "password")
        yield* Postgres.admin(base, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`)
        const up = yield* request(host.url, "/readiness")
        assert.strictEqual(up.status, 200, JSON.stringify(up.body))
      }),
    { timeout: 120_000 }
  )
})

describe("AGENT_HOST_STATE=postgres configuration", () => {
  const configLine = (env: Record<string, string>) =>
    Effect.flip(
      Effect.withConfigProvider(Persistence.config, ConfigProvider.fromMap(new Map(Object.entries(env))))
    ).pipe(Effect.map(StartupError.describe))

  it.effect("DATABASE_URL missing or not a postgres URL is one line naming it (never echoing it)", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* configLine({ AGENT_HOST_STATE: "postgres" }),
        "configuration error: DATABASE_URL: not set; postgres state needs postgres://user:password@host:port/database"
      )
      const wrong = yield* configLine({ AGENT_HOST_CLUSTER: "postgres", DATABASE_URL: "mysql://u:hunter2@h/db" })
      assert.match(wrong, /^configuration error: DATABASE_URL: has the scheme mysql:/)
      assert.notInclude(wrong, "hunter2")
      assert.match(
        yield* configLine({ AGENT_HOST_STATE: "postgres", DATABASE_URL: "not a url hunter2" }),
        /^configuration error: DATABASE_URL: is not a URL/
      )
      assert.match(
        yield* configLine({ AGENT_HOST_CLUSTER: "postgres", AGENT_HOST_STATE: "sqlite" }),
        /^configuration error: AGENT_HOST_STATE: is sqlite, but AGENT_HOST_CLUSTER=postgres keeps state in Postgres/
      )
    }))

  it.effect("AGENT_HOST_CLUSTER=postgres implies postgres state; DATABASE_URL is ignored otherwise", () =>
    Effect.gen(function*() {
      const settings = (env: Record<string, string>) =>
        Effect.withConfigProvider(Persistence.config, ConfigProvider.fromMap(new Map(Object.entries(env))))
      const clustered = yield* settings({ AGENT_HOST_CLUSTER: "postgres", DATABASE_URL: "postgres://h/db" })
      assert.strictEqual(clustered.mode, "postgres")
      assert.isTrue(Option.isSome(clustered.databaseUrl))
      const plain = yield* settings({ DATABASE_URL: "postgres://h/db" })
      assert.strictEqual(plain.mode, "sqlite")
      assert.isTrue(Option.isNone(plain.databaseUrl))
      assert.isTrue(Config.isConfig(Persistence.config))
    }))
})
