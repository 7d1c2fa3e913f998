/**
 * A durable workflow as the target of a cluster (two runners in one process, real sockets, the run's Postgres):
 * `WorkflowTarget.layerEngineCluster` runs each execution as an entity of the runners' own sharding, so a workflow
 * turn received by either host runs once, and an execution whose runner stops mid-way is resumed by the other from
 * its journal, without running a finished activity again.
 */
import * as EntityId from "@effect/cluster/EntityId"
import * as ShardId from "@effect/cluster/ShardId"
import * as Sharding from "@effect/cluster/Sharding"
import { assert, describe, it } from "@effect/vitest"
import { Activity } from "@effect/workflow"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Redacted, Schedule, Schema, Scope } from "effect"
import * as Cluster from "../src/cluster/Cluster.js"
import { SessionEntity } from "../src/cluster/SessionEntity.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import { Turns } from "../src/core/Turns.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import type { IsolationKey } from "../src/domain/Ids.js"
import { responseText, userMessage } from "../src/domain/Message.js"
import * as PgDb from "../src/state/postgres/PgDb.js"
import * as PgStateStore from "../src/state/postgres/PgStateStore.js"
import * as WorkflowOutput from "../src/workflow/WorkflowOutput.js"
import * as WorkflowTarget from "../src/workflow/WorkflowTarget.js"
import * as ClusterOptions from "./utils/ClusterOptions.js"
import * as Postgres from "./utils/Postgres.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const Flow = WorkflowTarget.makeWorkflow({ name: "ClusterFlow", success: Schema.String })

/** `first` records where it ran; `second` records each attempt, then waits for the gate; the result names the runner. */
const runner = (label: string, url: string, log: Array<string>, gate: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const options = ClusterOptions.make(url, yield* ServerProcess.freePort, {
      messagePollInterval: Duration.millis(500),
      simulateRemoteSerialization: true
    })
    const target = WorkflowTarget.layer(Flow, (payload) =>
      Effect.gen(function*() {
        yield* Activity.make({
          name: "first",
          execute: Effect.sync(() => void log.push(`first:${label}:${payload.text}`))
        })
        const by = yield* Activity.make({
          name: "second",
          success: Schema.String,
          execute: Effect.sync(() => log.push(`second:${label}:${payload.text}`)).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.as(label)
          )
        })
        yield* WorkflowOutput.text(`done by ${by}`)
        return `${payload.text}:${by}`
      }), { pollInterval: Duration.millis(100) }).pipe(Layer.provideMerge(WorkflowTarget.layerEngineCluster))
    return AgentHost.layer({ channels: [] }).pipe(
      Layer.provideMerge(
        Cluster.layerCore(
          options,
          HostLayers.layerCoreWith({ push: Cluster.Pushes.layer }).pipe(Layer.provideMerge(target))
        )
      ),
      Layer.provide(PgStateStore.layerWithoutDb.pipe(Layer.provideMerge(PgDb.layer({
        url: Redacted.make(url),
        maxConnections: 4
      })))),
      Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
    )
  })

const request = (key: string, text: string): ChannelRequest => ({
  channel: "test",
  operation: "message.create",
  input: [userMessage(text)],
  session: { isolationKey: key as IsolationKey },
  stream: false
})

const run = (host: Context.Context<Turns>, key: string, text: string) =>
  Context.get(host, Turns).contextFor("test").run(request(key, text))

/** Two runners, each in a scope of its own (so a test can stop one), closed with the test's scope at the latest. */
const twoRunners = (log: Array<string>, gate: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const url = yield* Postgres.database
    const start = (label: string) =>
      Effect.gen(function*() {
        const scope = yield* Effect.acquireRelease(Scope.make(), (scope, exit) => Scope.close(scope, exit))
        // Typed as what the test uses: the composed layer's requirements are all provided above (it builds).
        const layer: Layer.Layer<Turns, unknown> = (yield* runner(label, url, log, gate)) as never
        const context = yield* Layer.buildWithScope(layer, scope)
        return { context, scope }
      })
    const a = yield* start("A")
    const b = yield* start("B")
    // Let both runners see each other and settle the shard assignment (a few refreshes of 500 ms), and on a loaded
    // machine wait (bounded) until each holds shards: the test spreads executions over both.
    yield* Effect.sleep(Duration.seconds(3))
    const holdsShards = (context: Context.Context<Turns>) => {
      const sharding = Context.get(context as unknown as Context.Context<Sharding.Sharding>, Sharding.Sharding)
      return Array.from({ length: 31 }, (_, i) => ShardId.make("default", i)).some((id) => sharding.hasShardId(id))
    }
    yield* Effect.suspend(() =>
      holdsShards(a.context) && holdsShards(b.context) ? Effect.void : Effect.fail("shards not yet assigned")
    ).pipe(
      Effect.retry(Schedule.spaced(Duration.millis(200)).pipe(Schedule.upTo(Duration.seconds(20)))),
      Effect.orDie
    )
    return { A: a, B: b }
  })

describe("ClusterWorkflow (two runners in one process)", () => {
  it.scopedLive("a workflow turn received by either runner runs its execution once", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const gate = yield* Deferred.make<void>()
      yield* Deferred.succeed(gate, undefined)
      const { A, B } = yield* twoRunners(log, gate)
      // Keys whose sessions each runner owns now, three each (the first found among w0, w1, ...): six keys hashed
      // at random could all land on one runner while the shards are still unevenly assigned.
      const owns = (context: Context.Context<Turns>, key: string) => {
        const sharding = Context.get(context as unknown as Context.Context<Sharding.Sharding>, Sharding.Sharding)
        const id = EntityId.make(key)
        return sharding.hasShardId(sharding.getShardId(id, SessionEntity.getShardGroup(id)))
      }
      const keys: Array<string> = []
      const ofA: Array<string> = []
      const ofB: Array<string> = []
      for (let k = 0; k < 1_000 && (ofA.length < 3 || ofB.length < 3); k++) {
        const key = `w${k}`
        if (ofA.length < 3 && owns(A.context, key)) ofA.push(key)
        else if (ofB.length < 3 && owns(B.context, key)) ofB.push(key)
      }
      assert.strictEqual(ofA.length, 3, "keys owned by A")
      assert.strictEqual(ofB.length, 3, "keys owned by B")
      for (let i = 0; i < 3; i++) keys.push(ofA[i]!, ofB[i]!)
      const runners = new Set<string>()
      for (let k = 0; k < keys.length; k++) {
        const via = k % 2 === 0 ? A : B
        const outcome = yield* run(via.context, keys[k]!, `m${k}`)
        const by = String(outcome.result.result).split(":")[1]!
        runners.add(by)
        assert.strictEqual(outcome.result.result, `m${k}:${by}`)
        assert.strictEqual(responseText(outcome.result.response), `done by ${by}`)
        assert.deepStrictEqual(log.filter((line) => line.endsWith(`:m${k}`)), [
          `first:${by}:m${k}`,
          `second:${by}:m${k}`
        ])
      }
      assert.deepStrictEqual([...runners].sort(), ["A", "B"], "executions are spread over both runners")
    }), { timeout: 90_000 })

  it.scopedLive(
    "an execution whose runner stops mid-workflow is resumed by the other, its finished activity not run again",
    () =>
      Effect.gen(function*() {
        const log: Array<string> = []
        const gate = yield* Deferred.make<void>()
        const runners = yield* twoRunners(log, gate)
        // The turn waits at the gate; whichever runner holds the execution is then stopped.
        const turn = yield* Effect.forkScoped(run(runners.A.context, "dying", "x"))
        yield* Effect.sync(() => log.some((line) => line.startsWith("second:"))).pipe(
          Effect.repeat({ until: (started) => started, schedule: Schedule.spaced(Duration.millis(100)) }),
          Effect.timeout(Duration.seconds(30))
        )
        const first = log.filter((line) => line.startsWith("first:"))
        assert.strictEqual(first.length, 1)
        const holder = first[0]!.split(":")[1] as "A" | "B"
        const survivor = holder === "A" ? "B" : "A"
        yield* Scope.close(runners[holder].scope, Exit.void)
        yield* Deferred.succeed(gate, undefined)
        // The survivor takes the shard and replays the execution: `second` again (it was in flight), `first` not.
        yield* Effect.sync(() => log.includes(`second:${survivor}:x`)).pipe(
          Effect.repeat({ until: (resumed) => resumed, schedule: Schedule.spaced(Duration.millis(200)) }),
          Effect.timeout(Duration.seconds(45))
        )
        // Where the turn ends depends on where its session lives (its own shard, not the execution's):
        // - neither the turn's runner (A) nor the session's was stopped: the turn itself answers with the ending;
        // - the session lived on the stopped runner: the session's next message, on the survivor, delivers the ending;
        // - the session lived on the survivor but the turn came in through A, which was stopped: the session followed
        //   the execution to its end and handed the ending to a caller that is gone (as with a client that
        //   disconnects), so the next message starts the session's next execution.
        const followed = yield* Fiber.await(turn)
        if (Exit.isSuccess(followed)) {
          assert.strictEqual(responseText(followed.value.result.response), `done by ${survivor}`)
          assert.strictEqual(followed.value.result.result, `x:${survivor}`)
        } else {
          const next = yield* run(runners[survivor].context, "dying", "next").pipe(
            Effect.retry({ times: 20, schedule: Schedule.spaced(Duration.millis(500)) })
          )
          assert.strictEqual(responseText(next.result.response), `done by ${survivor}`)
          const result = String(next.result.result)
          assert.include([`x:${survivor}`, `next:${survivor}`], result)
          if (result === `next:${survivor}`) {
            // Only a turn that came in through the stopped runner can lose its ending this way.
            assert.strictEqual(holder, "A")
            assert.deepStrictEqual(log.filter((line) => line.endsWith(":next")), [
              `first:${survivor}:next`,
              `second:${survivor}:next`
            ])
          }
        }
        assert.deepStrictEqual(log.filter((line) => line.startsWith("first:") && line.endsWith(":x")), [
          `first:${holder}:x`
        ])
        assert.deepStrictEqual(log.filter((line) => line.endsWith(":x")), [
          `first:${holder}:x`,
          `second:${holder}:x`,
          `second:${survivor}:x`
        ])
      }),
    { timeout: 120_000 }
  )
})
