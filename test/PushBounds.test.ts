/**
 * Resource bounds on the push path: a cap on the destinations one request may name, and a reply stored once in
 * the task table however many destinations it goes to (SQLite), each destination still shaped by its own hook.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Layer } from "effect"
import * as Responses from "../src/channels/Responses/index.js"
import * as Agent from "../src/core/Agent.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as DurablePush from "../src/delivery/DurablePush.js"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import type { HostedRunResult } from "../src/domain/ChannelRequest.js"
import { assistantMessage } from "../src/domain/Message.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"
import * as StateStore from "../src/state/StateStore.js"
import * as PushChannels from "./utils/PushChannels.js"
import * as TempDir from "./utils/TempDir.js"

const log: Array<PushChannels.Delivery> = []
let runs = 0

// The agent answers with a large reply, so a per-destination copy in the task table would be obvious.
const agent = Agent.layer(Agent.make({
  name: "big",
  run: (turn) =>
    Effect.sync(() => {
      runs++
      const text = turn.input.flatMap((m) => m.contents.flatMap((c) => c._tag === "text" ? [c.text] : [])).join(" ")
      return { messages: [assistantMessage(`reply to ${text}: ${"r".repeat(50_000)}`)] }
    })
}))

// Each destination's hook stamps its own copy with the destination id.
const hooks = {
  response: (result: HostedRunResult, context: { readonly destination?: { readonly nativeId: string } | undefined }) =>
    Effect.sync(() => {
      const first = result.response.messages[0]
      if (first !== undefined) {
        ;(first.contents as Array<unknown>).push({ _tag: "text", text: ` [for ${context.destination?.nativeId}]` })
      }
      return result
    })
}

const MAX_TARGETS = 12
// The caller names other identities: it needs a push key (AGENT_HOST_PUSH_KEYS).
const PUSH_KEY = "push-key-for-tests"

const hostLayer = Layer.unwrapScoped(
  Effect.map(
    TempDir.make("push-bounds-"),
    (dir) =>
      AgentHost.layer({ channels: [PushChannels.make("alpha", log, { hooks }), Responses.make()] }).pipe(
        Layer.provideMerge(HostLayers.layerCoreWith({ push: DurablePush.layerSqlite })),
        Layer.provide(agent),
        Layer.provideMerge(StateStore.layerMemory),
        Layer.provide(
          HostConfig.layer({ port: 0, host: "127.0.0.1", maxResponseTargets: MAX_TARGETS, pushKeys: [PUSH_KEY] })
        ),
        Layer.provideMerge(StateDb.layer({ directory: dir }))
      )
  )
)

const post = (path: string, body: unknown) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const r = await fetch(`${host.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${PUSH_KEY}` },
        body: JSON.stringify(body)
      })
      return { status: r.status, body: (await r.json()) as any }
    }))

const waitFor = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (check()) return
      yield* Effect.sleep("10 millis")
    }
    assert.fail(`timed out waiting for ${what}`)
  })

describe("push bounds", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("a request naming more destinations than allowed is refused with a 400 before the turn runs", () =>
      Effect.gen(function*() {
        const before = runs
        const targets = Array.from({ length: MAX_TARGETS + 1 }, (_, i) => `alpha:user${i}`)
        const refused = yield* post("/v1/responses", { input: "hi", response_target: { channels: targets } })
        assert.strictEqual(refused.status, 400)
        assert.strictEqual(refused.body.error.code, "invalid_request")
        assert.strictEqual(refused.body.error.param, "response_target")
        assert.include(refused.body.error.message, `at most ${MAX_TARGETS}`)
        const alsoRefused = yield* post("/v1/responses", {
          input: "hi",
          response_target: Array.from({ length: 6000 }, (_, i) => `alpha:user${i}`)
        })
        assert.strictEqual(alsoRefused.status, 400)
        assert.strictEqual(runs, before, "the turn must not run")
        const runner = yield* TaskRunner.TaskRunner
        assert.strictEqual((yield* runner.stats).live, 0, "nothing scheduled")
        // At the cap it is accepted.
        const accepted = yield* post("/v1/responses", {
          input: "hi",
          response_target: { channels: targets.slice(0, MAX_TARGETS) }
        })
        assert.strictEqual(accepted.status, 200)
        assert.strictEqual(runs, before + 1)
      }))

    it.effect("N destinations: the reply is stored once; every destination gets its own shaped copy", () =>
      Effect.gen(function*() {
        const start = log.length
        const destinations = Array.from({ length: 10 }, (_, i) => `friend${i}`)
        const out = yield* post("/alpha/say", {
          text: "fan out",
          user: "me",
          session: "fan",
          target: { kind: "channels", targets: destinations.map((d) => `alpha:${d}`), echoInput: true }
        })
        assert.strictEqual(out.status, 200)
        // Only this test's destinations: the previous test's pushes may still be arriving.
        const mine = () => log.slice(start).filter((x) => x.nativeId.startsWith("friend"))
        yield* waitFor(() => mine().length >= 20, "an echo and a reply per destination")
        const delivered = mine()
        for (const d of destinations) {
          const mine = delivered.filter((x) => x.nativeId === d)
          assert.deepStrictEqual(mine.map((x) => x.isEcho), [true, false], d)
          const reply = mine[1]!
          assert.include(reply.text, "reply to fan out")
          // Shaped by the hook for this destination only.
          assert.include(reply.text, `[for ${d}]`)
          assert.strictEqual(reply.text.split("[for ").length, 2, reply.text.slice(-80))
        }

        const sql = yield* SqlClient.SqlClient
        const tasks = yield* sql<{ readonly payload: string; readonly shared: string | null }>`
          SELECT payload, shared FROM agent_host_tasks WHERE idempotency_key LIKE ${"%->alpha:friend%"}`
        assert.strictEqual(tasks.length, 10)
        const hashes = new Set(tasks.map((t) => t.shared))
        assert.strictEqual(hashes.size, 1, "every task names the same stored reply")
        for (const t of tasks) assert.isBelow(t.payload.length, 1_000, "a task stores its destination only")
        const hash = [...hashes][0]!
        const payloads = yield* sql<{ readonly size: number }>`
          SELECT length(body) AS size FROM agent_host_task_payloads WHERE hash = ${hash}`
        assert.strictEqual(payloads.length, 1)
        assert.isAbove(payloads[0]!.size, 50_000)
        assert.isBelow(payloads[0]!.size, 2 * 50_000 + 10_000, "one copy of the reply (and its echo), not ten")

        // Retention: the reply goes with the last task naming it, whoever deletes tasks.
        const keys = tasks.length
        yield* sql`DELETE FROM agent_host_tasks WHERE shared = ${hash} AND rowid NOT IN (
          SELECT rowid FROM agent_host_tasks WHERE shared = ${hash} LIMIT 1)`
        assert.strictEqual(keys, 10)
        const kept = yield* sql<{ readonly n: number }>`
          SELECT count(*) AS n FROM agent_host_task_payloads WHERE hash = ${hash}`
        assert.strictEqual(kept[0]!.n, 1)
        yield* sql`DELETE FROM agent_host_tasks WHERE shared = ${hash}`
        const gone = yield* sql<{ readonly n: number }>`
          SELECT count(*) AS n FROM agent_host_task_payloads WHERE hash = ${hash}`
        assert.strictEqual(gone[0]!.n, 0)
      }))
  })
})

// A destination that stalls until the gate opens; the runner runs one push at a time and lets one wait.
const stalledLog: Array<PushChannels.Delivery> = []
const started: Array<string> = []
const gate = Effect.runSync(Deferred.make<void>())
const stalled = PushChannels.make("slow", stalledLog, {
  before: (d) => Effect.zipRight(Effect.sync(() => started.push(d.nativeId)), Deferred.await(gate))
})

const stalledHost = Layer.unwrapScoped(
  Effect.map(TempDir.make("push-full-"), (dir) =>
    AgentHost.layer({ channels: [stalled, Responses.make()] }).pipe(
      Layer.provideMerge(HostLayers.layerCoreWith({
        push: DurablePush.layer.pipe(Layer.provideMerge(TaskRunner.layerSqlite({ concurrency: 1, queueCapacity: 1 })))
      })),
      Layer.provide(agent),
      Layer.provideMerge(StateStore.layerMemory),
      Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", pushKeys: [PUSH_KEY] })),
      Layer.provideMerge(StateDb.layer({ directory: dir }))
    ))
)

/** Posts and answers; a request that gets no answer within 20 s reports status 0 (the old code hung). */
const postAnswered = (path: string, body: unknown) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      try {
        const r = await fetch(`${host.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${PUSH_KEY}` },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(20_000)
        })
        return { status: r.status, retryAfter: r.headers.get("retry-after"), body: (await r.json()) as any }
      } catch (e) {
        return { status: 0, retryAfter: null, body: { error: String(e) } }
      }
    }))

describe("a full push queue", () => {
  layer(stalledHost, { excludeTestServices: true })((it) => {
    it.effect("answers 503 with retry-after before the turn runs; accepted pushes deliver once the destination recovers", () =>
      Effect.gen(function*() {
        const first = yield* postAnswered("/v1/responses", { input: "one", response_target: "slow:u1" })
        assert.strictEqual(first.status, 200, JSON.stringify(first.body))
        yield* waitFor(() => started.length === 1, "the first push to stall at the destination")
        // The one waiting place: taken by the second request's push.
        const second = yield* postAnswered("/v1/responses", { input: "two", response_target: "slow:u2" })
        assert.strictEqual(second.status, 200, JSON.stringify(second.body))

        const before = runs
        const refused = yield* postAnswered("/v1/responses", { input: "three", response_target: "slow:u3" })
        assert.strictEqual(refused.status, 503, JSON.stringify(refused.body))
        assert.strictEqual(refused.body.error.code, "push_queue_full")
        assert.isString(refused.body.error.message)
        assert.isAtLeast(Number(refused.retryAfter), 1)
        assert.strictEqual(runs, before, "the refused turn did not run")
        // Replies to the caller alone are not affected.
        const local = yield* postAnswered("/v1/responses", { input: "just me" })
        assert.strictEqual(local.status, 200)

        // The destination recovers: both accepted pushes arrive, the refused one never does.
        yield* Deferred.succeed(gate, undefined)
        yield* waitFor(() => stalledLog.filter((d) => !d.isEcho).length >= 2, "the accepted pushes")
        assert.sameMembers(stalledLog.map((d) => d.nativeId), ["u1", "u2"])
        assert.include(stalledLog.find((d) => d.nativeId === "u1")!.text, "reply to one")
        assert.include(stalledLog.find((d) => d.nativeId === "u2")!.text, "reply to two")
        const runner = yield* TaskRunner.TaskRunner
        for (let i = 0; i < 500 && !(yield* runner.accepting); i++) yield* Effect.sleep("10 millis")
        assert.isTrue(yield* runner.accepting, "room in the queue once the destination recovered")
        const retried = yield* postAnswered("/v1/responses", { input: "three", response_target: "slow:u3" })
        assert.strictEqual(retried.status, 200)
        yield* waitFor(() => stalledLog.some((d) => d.nativeId === "u3"), "the retried push")
      }))
  })
})
