import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Activity } from "@effect/workflow"
import { Context, Deferred, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentHost as Host } from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as StateStore from "../src/state/StateStore.js"
import * as WorkflowOutput from "../src/workflow/WorkflowOutput.js"
import * as WorkflowRecovery from "../src/workflow/WorkflowRecovery.js"
import * as WorkflowTarget from "../src/workflow/WorkflowTarget.js"
import type { Delivery } from "./utils/PushChannels.js"
import * as PushChannels from "./utils/PushChannels.js"

class Gate extends Context.Tag("test/Gate")<Gate, Deferred.Deferred<void>>() {}

const Gated = WorkflowTarget.makeWorkflow({ name: "Gated" })
const gatedTarget = WorkflowTarget.layer(Gated, (payload) =>
  Effect.gen(function*() {
    // Gated before any output: the turn that started it has nothing to take with it when it gives up.
    if (payload.text.startsWith("slow")) {
      const gate = yield* Gate
      yield* Activity.make({ name: "wait", execute: Deferred.await(gate) })
    }
    yield* WorkflowOutput.text(`working on ${payload.text}`)
    yield* WorkflowOutput.text(`done: ${payload.text}`)
  }), { turnTimeout: "400 millis", pollInterval: "50 millis" })

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

/** The host with a push channel, an Invocations-free core, the gated workflow, and the recovery loop on top. */
const hostWith = (
  log: Array<Delivery>,
  push: boolean,
  options: {
    readonly engine?: Layer.Layer<WorkflowTarget.EngineAndStore>
    readonly state?: Layer.Layer<StateStore.StateStore>
    readonly gate?: Layer.Layer<Gate>
  } = {}
) =>
  WorkflowRecovery.layer({ interval: "100 millis" }).pipe(
    Layer.provideMerge(HostLayers.layerWithCore({ channels: [PushChannels.make("pusher", log, { push })] })),
    Layer.provideMerge(gatedTarget),
    Layer.provideMerge(options.engine ?? WorkflowTarget.layerEngineMemory),
    Layer.provideMerge(options.state ?? StateStore.layerMemory),
    Layer.provideMerge(options.gate ?? Layer.effect(Gate, Deferred.make<void>())),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
  )

const sqlEngine = (dir: string): Layer.Layer<WorkflowTarget.EngineAndStore> =>
  // The gated activity never ends on host one: do not wait the default 15 s for it at shutdown (a kill -9
  // would not wait at all).
  WorkflowTarget.layerEngineSql({ shardingConfig: { entityTerminationTimeout: "200 millis" } }).pipe(
    Layer.provide(SqliteClient.layer({ filename: Path.join(dir, "state.db") })),
    Layer.orDie
  )

const waitFor = (check: () => boolean, tries = 100) =>
  Effect.gen(function*() {
    for (let i = 0; i < tries; i++) {
      if (check()) return true
      yield* Effect.sleep("50 millis")
    }
    return check()
  })

describe("WorkflowRecovery", () => {
  it.live(
    "an ending whose request is gone is pushed once, and the next message does not repeat it",
    () =>
      Effect.gen(function*() {
        const log: Array<Delivery> = []
        yield* Effect.gen(function*() {
          const host = yield* Host
          const gate = yield* Gate
          const say = (text: string) => post(`${host.url}/pusher/say`, { text, user: "u1", session: "s1" })
          // A first turn completes: the identity is recorded on the key.
          const first = yield* say("hi")
          assert.strictEqual(first.status, 200, first.body)
          assert.include(JSON.parse(first.body).reply, "done: hi")
          // The second turn outlives its request (the turn times out while the workflow waits on the gate).
          const second = yield* say("slow one")
          assert.strictEqual(second.status, 500)
          // Nothing is pushed while the execution still runs.
          yield* Effect.sleep("300 millis")
          assert.deepStrictEqual(log, [])
          yield* Deferred.succeed(gate, undefined)
          assert.isTrue(yield* waitFor(() => log.length > 0), "the ending was never pushed")
          yield* Effect.sleep("400 millis")
          assert.strictEqual(log.length, 1, JSON.stringify(log))
          const pushed = log[0]!
          assert.strictEqual(pushed.channel, "pusher")
          assert.strictEqual(pushed.nativeId, "u1")
          assert.isFalse(pushed.isEcho)
          assert.include(pushed.text, "working on slow one")
          assert.include(pushed.text, "done: slow one")
          assert.match(pushed.key, /^workflow:.+:0-2$/)
          // The next message starts a new execution: no repeat of the pushed ending.
          const third = yield* say("again")
          assert.strictEqual(third.status, 200, third.body)
          const reply = JSON.parse(third.body).reply as string
          assert.notInclude(reply, "slow one")
          assert.include(reply, "done: again")
          assert.strictEqual(log.length, 1)
        }).pipe(Effect.provide(hostWith(log, true)))
      }),
    20_000
  )

  it.live("a channel that cannot push leaves the ending for the next message", () =>
    Effect.gen(function*() {
      const log: Array<Delivery> = []
      yield* Effect.gen(function*() {
        const host = yield* Host
        const gate = yield* Gate
        const say = (text: string) => post(`${host.url}/pusher/say`, { text, user: "u2", session: "s2" })
        assert.strictEqual((yield* say("hi")).status, 200)
        assert.strictEqual((yield* say("slow two")).status, 500)
        yield* Deferred.succeed(gate, undefined)
        yield* Effect.sleep("600 millis")
        assert.deepStrictEqual(log, [])
        const next = yield* say("again")
        assert.strictEqual(next.status, 200, next.body)
        assert.include(JSON.parse(next.body).reply, "done: slow two")
      }).pipe(Effect.provide(hostWith(log, false)))
    }), 20_000)

  it.live(
    "sqlite engine: an execution that finishes after a host restart is pushed by the new host",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "wf-recovery-"))
        const log: Array<Delivery> = []
        // The identity registry outlives the hosts (as the state database would).
        const state = Layer.succeed(StateStore.StateStore, yield* StateStore.makeMemory)
        const say = (text: string) =>
          Effect.flatMap(Host, (host) => post(`${host.url}/pusher/say`, { text, user: "u3", session: "s3" }))
        // Host one: a turn completes, then a turn gives up while the execution waits on a gate never opened.
        yield* Effect.gen(function*() {
          assert.strictEqual((yield* say("hi")).status, 200)
          assert.strictEqual((yield* say("slow three")).status, 500)
        }).pipe(Effect.provide(hostWith(log, true, { engine: sqlEngine(dir), state })))
        assert.deepStrictEqual(log, [])
        // Host two on the same database, gate open: the engine resumes the execution and recovery pushes it.
        const open = Layer.effect(Gate, Effect.tap(Deferred.make<void>(), (gate) => Deferred.succeed(gate, undefined)))
        yield* Effect.gen(function*() {
          assert.isTrue(yield* waitFor(() => log.length > 0, 300), "the ending was never pushed")
          yield* Effect.sleep("300 millis")
          assert.strictEqual(log.length, 1, JSON.stringify(log))
          assert.include(log[0]!.text, "done: slow three")
          const next = yield* say("again")
          assert.strictEqual(next.status, 200, next.body)
          assert.notInclude(JSON.parse(next.body).reply, "slow three")
        }).pipe(Effect.provide(hostWith(log, true, { engine: sqlEngine(dir), state, gate: open })))
      }).pipe(Effect.timeout("40 seconds")),
    45_000
  )
})
