/**
 * Retention of stored Responses through the real channel, on a real SQLite file and on the memory store: with a
 * short prune interval, a fresh response survives many prune runs and goes only once it is older than the
 * retention; an old row written by a version that stored seconds is migrated, not pruned. Time is `TestClock`,
 * started at a realistic date (at the epoch, seconds and milliseconds look alike).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Option, TestClock } from "effect"
import * as Path from "node:path"
import * as Responses from "../src/channels/Responses/index.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as Time from "../src/domain/Time.js"
import * as Persistence from "../src/state/Persistence.js"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as StateStore from "../src/state/StateStore.js"
import * as TempDir from "./utils/TempDir.js"

const start = Date.parse("2026-03-01T12:00:00Z")
const retention = Duration.hours(1)
const interval = Duration.minutes(1)

const hostLayer = (settings: Persistence.PersistenceSettings) =>
  HostLayers.layerWithCore({ channels: [Responses.make()] }).pipe(
    Layer.provide(DefaultAgent.layer),
    Layer.provideMerge(Persistence.layer(settings)),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
  )

const create = (url: string, input: string, previous?: string) =>
  Effect.promise(() =>
    fetch(`${url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(previous === undefined ? { input } : { input, previous_response_id: previous })
    }).then(async (r) => ({ status: r.status, body: await r.json() as Record<string, unknown> }))
  ).pipe(Effect.map((r) => {
    assert.strictEqual(r.status, 200, JSON.stringify(r.body))
    return r.body
  }))

const status = (url: string, id: string) =>
  Effect.promise(() => fetch(`${url}/v1/responses/${id}`).then((r) => r.text().then(() => r.status)))

/** Advances the clock one prune interval at a time, so every run in between happens. */
const advance = (total: Duration.Duration) =>
  Effect.gen(function*() {
    const steps = Math.round(Duration.toMillis(total) / Duration.toMillis(interval))
    for (let i = 0; i < steps; i++) yield* TestClock.adjust(interval)
  })

const scenario = (settings: Persistence.PersistenceSettings) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(start)
    const context = yield* Layer.build(hostLayer(settings))
    const url = Context.get(context, AgentHost.AgentHost).url

    const first = yield* create(url, "remember me")
    assert.strictEqual(first["created_at"], Math.floor(start / 1000), "the wire keeps created_at in seconds")
    const firstId = first["id"] as string
    const stored = yield* Effect.provide(
      Effect.flatMap(StateStore.StateStore, (store) => store.getResponse(firstId)),
      context
    )
    assert.strictEqual(Option.getOrThrow(stored).createdAt, start, "the store keeps milliseconds")

    // many prune runs well within the retention: still there, and a continuation chains on it
    yield* advance(Duration.minutes(10))
    assert.strictEqual(yield* status(url, firstId), 200, "a fresh response survives the prune runs")
    const second = yield* create(url, "and again", firstId)
    assert.strictEqual(yield* status(url, second["id"] as string), 200)

    yield* advance(Duration.minutes(40))
    const later = yield* create(url, "a later one")
    const laterId = later["id"] as string
    assert.strictEqual(yield* status(url, firstId), 200, "50 minutes old, retention 1 hour")

    // past the retention: the first goes at the next run, the later ones stay
    yield* advance(Duration.minutes(11))
    assert.strictEqual(yield* status(url, firstId), 404, "pruned once older than the retention")
    assert.strictEqual(yield* status(url, second["id"] as string), 200, "51 minutes old")
    assert.strictEqual(yield* status(url, laterId), 200, "the later response is still fresh")

    yield* advance(Duration.minutes(50))
    assert.strictEqual(yield* status(url, second["id"] as string), 404)
    assert.strictEqual(yield* status(url, laterId), 404)
  })

describe("Response retention", () => {
  it.scoped("sqlite: a fresh response survives the prune runs; an old one is pruned", () =>
    Effect.gen(function*() {
      const stateDir = Path.join(yield* TempDir.make(), "state")
      yield* scenario({
        ...Persistence.defaults,
        stateDir,
        responseRetention: retention,
        pruneInterval: interval
      })
    }))

  it.scoped("memory: a fresh response survives the prune runs; an old one is pruned", () =>
    scenario({ ...Persistence.defaults, mode: "memory", responseRetention: retention, pruneInterval: interval }))

  it.scoped("sqlite: rows stored in seconds by an older version are migrated to milliseconds, not pruned", () =>
    Effect.gen(function*() {
      const stateDir = Path.join(yield* TempDir.make(), "state")
      const settings: Persistence.PersistenceSettings = {
        ...Persistence.defaults,
        stateDir,
        responseRetention: retention,
        pruneInterval: interval
      }
      // An older database: migrations 1-2 only, and a response stored with created_at in seconds.
      yield* Effect.scoped(Effect.provide(Effect.void, Persistence.layer(settings)))
      const raw = NativeSqlite.open(Path.join(stateDir, "state.db"))
      raw.exec("DELETE FROM agent_host_migrations WHERE migration_id >= 3")
      raw.exec("DROP INDEX IF EXISTS responses_by_status")
      raw.exec("ALTER TABLE responses DROP COLUMN user_key")
      raw.exec("ALTER TABLE responses DROP COLUMN status")
      const ten = Math.floor((start - Duration.toMillis(Duration.minutes(10))) / 1000)
      raw.prepare(
        "INSERT INTO responses (id, session_key, response, input_items, created_at) VALUES (?, NULL, ?, '[]', ?)"
      ).run("resp_legacy", JSON.stringify({ id: "resp_legacy", status: "completed", created_at: ten }), ten)
      raw.close()

      yield* TestClock.setTime(start)
      const context = yield* Layer.build(Persistence.layer(settings))
      const get = Effect.provide(
        Effect.flatMap(StateStore.StateStore, (store) => store.getResponse("resp_legacy")),
        context
      )
      yield* advance(Duration.minutes(5))
      const legacy = yield* get
      assert.isTrue(Option.isSome(legacy), "a response kept by the old version survives the upgrade")
      assert.strictEqual(Option.getOrThrow(legacy).createdAt, Time.fromMillis(ten * 1000))
      yield* advance(Duration.minutes(51))
      assert.isTrue(Option.isNone(yield* get), "and is pruned once older than the retention")
    }))
})
