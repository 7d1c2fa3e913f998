/**
 * The admin task routes in cluster mode (src/cluster/PushAdmin.ts): two runners on the run's Postgres, composed as
 * `npm start` composes a runner (`Cluster.layerRunner`), with the admin routes. Pushes are persisted cluster
 * messages; the routes list them (pending, dead letters) in bounded pages from the cluster's message tables,
 * replay a dead letter once as a new message with a derived idempotency key, and cancel a pending one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Layer, Schedule } from "effect"
import * as Cluster from "../src/cluster/Cluster.js"
import { replayKey } from "../src/cluster/PushAdmin.js"
import * as AgentHost from "../src/core/AgentHost.js"
import { PushFailed } from "../src/core/Channel.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as AdminRoutes from "../src/delivery/AdminRoutes.js"
import * as Persistence from "../src/state/Persistence.js"
import * as ClusterOptions from "./utils/ClusterOptions.js"
import * as Postgres from "./utils/Postgres.js"
import * as PushChannels from "./utils/PushChannels.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const key = "admin-key"

const runner = (url: string, runnerPort: number, beta: PushChannels.Options, log: Array<PushChannels.Delivery>) => {
  const options = ClusterOptions.make(url, runnerPort)
  const host = AgentHost.layer({
    channels: [AdminRoutes.make(), PushChannels.make("alpha", log), PushChannels.make("beta", log, beta)]
  })
  return Cluster.layerRunner(options, host).pipe(
    Layer.provide(DefaultAgent.layer),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", apiKeys: [key] })),
    Layer.provide(Cluster.layerState(options, Persistence.defaults))
  )
}

const call = (base: string, method: string, path: string, options: { body?: unknown; key?: string } = {}) =>
  Effect.promise(async () => {
    const headers: Record<string, string> = { "content-type": "application/json" }
    if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
    const r = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
    })
    return { status: r.status, body: (await r.json()) as any }
  })

const poll = <A>(effect: Effect.Effect<A>, ok: (a: A) => boolean, what: string) =>
  effect.pipe(
    Effect.repeat({ until: ok, schedule: Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo("20 seconds")) }),
    Effect.zipRight(effect),
    Effect.tap((a) => ok(a) ? Effect.void : Effect.die(new Error(`timed out waiting for ${what}`)))
  )

describe("cluster admin routes over push messages", () => {
  it.scopedLive(
    "dead letters and pending pushes are listed in pages, replayed once, cancelled",
    () =>
      Effect.gen(function*() {
        const url = yield* Postgres.database
        const log: Array<PushChannels.Delivery> = []
        let healthy = false
        const stalled = yield* Deferred.make<void>()
        const beta: PushChannels.Options = {
          // bob's pushes fail (a dead letter) until `healthy`; carol's wait (pending) until the test lets them go.
          fail: (d) =>
            d.nativeId === "bob" && !healthy ?
              new PushFailed({ reason: "rejected", retryable: false, message: "403 bot was blocked" }) :
              undefined,
          before: (d) => d.nativeId === "carol" ? Deferred.await(stalled) : Effect.void
        }
        const a = yield* Layer.build(runner(url, yield* ServerProcess.freePort, beta, log))
        const b = yield* Layer.build(runner(url, yield* ServerProcess.freePort, beta, log))
        yield* Effect.sleep(Duration.seconds(3))
        const urlA = Context.get(a, AgentHost.AgentHost).url
        const urlB = Context.get(b, AgentHost.AgentHost).url

        const pushTo = (user: string, n: number) =>
          Effect.gen(function*() {
            yield* call(urlA, "POST", "/beta/say", { body: { text: "hi", user, session: `adm-${user}-${n}` } })
            const sent = yield* call(urlB, "POST", "/alpha/say", {
              body: {
                text: `tell ${user} ${n}`,
                user: `al${n}`,
                session: `adm-${user}-${n}`,
                target: { kind: "channels", targets: ["beta"] }
              }
            })
            assert.strictEqual(sent.status, 200, JSON.stringify(sent.body))
          })

        // Two dead letters (bob), one pending push (carol).
        yield* pushTo("bob", 1)
        yield* pushTo("bob", 2)
        yield* pushTo("carol", 3)

        const failed = yield* poll(
          call(urlA, "GET", "/admin/tasks?status=failed", { key }),
          (r) => r.body.tasks?.length === 2,
          "two dead letters"
        )
        const [newest, oldest] = failed.body.tasks
        assert.strictEqual(newest.status, "failed")
        assert.strictEqual(newest.last_error, "403 bot was blocked")
        assert.strictEqual(newest.channel, "beta")
        assert.match(newest.idempotency_key, /->beta:bob$/)
        assert.isAbove(Number(newest.id), Number(oldest.id), "newest first")
        assert.isUndefined(newest.payload)

        // Bounded pages: one at a time, continued with `after`.
        const page1 = yield* call(urlB, "GET", "/admin/tasks?status=failed&limit=1", { key })
        assert.deepStrictEqual(page1.body.tasks.map((t: any) => t.id), [newest.id])
        assert.strictEqual(page1.body.next, newest.id)
        const page2 = yield* call(urlB, "GET", `/admin/tasks?status=failed&limit=1&after=${page1.body.next}`, { key })
        assert.deepStrictEqual(page2.body.tasks.map((t: any) => t.id), [oldest.id])
        const page3 = yield* call(urlB, "GET", `/admin/tasks?status=failed&limit=1&after=${page2.body.next}`, { key })
        assert.deepStrictEqual(page3.body.tasks, [])
        assert.isUndefined(page3.body.next)

        // The pending push, cancelled through the other runner: it is never delivered.
        const pending = yield* poll(
          call(urlB, "GET", "/admin/tasks?status=pending", { key }),
          (r) => r.body.tasks?.length === 1,
          "the stalled push"
        )
        const carol = pending.body.tasks[0]
        assert.strictEqual(carol.destination, "beta:carol")
        const cancelled = yield* call(urlB, "POST", `/admin/tasks/${carol.id}/cancel`, { key })
        assert.strictEqual(cancelled.status, 200, JSON.stringify(cancelled.body))
        assert.deepStrictEqual(cancelled.body, { cancelled: true, id: carol.id })
        const carolNow = yield* call(urlA, "GET", `/admin/tasks/${carol.id}`, { key })
        assert.strictEqual(carolNow.body.task.status, "cancelled")
        yield* Deferred.succeed(stalled, undefined)
        const cancelAgain = yield* call(urlA, "POST", `/admin/tasks/${carol.id}/cancel`, { key })
        assert.strictEqual(cancelAgain.status, 409)
        assert.include(cancelAgain.body.error.message, "is cancelled")
        const noPending = yield* call(urlA, "GET", "/admin/tasks?status=pending", { key })
        assert.deepStrictEqual(noPending.body.tasks, [])

        // Replay of a dead letter: a new message with a derived key, delivered; a second replay is refused.
        healthy = true
        const replayed = yield* call(urlA, "POST", `/admin/tasks/${oldest.id}/replay`, { key })
        assert.strictEqual(replayed.status, 202, JSON.stringify(replayed.body))
        const task = replayed.body.task
        assert.notStrictEqual(task.id, oldest.id)
        assert.strictEqual(task.idempotency_key, replayKey(oldest.idempotency_key))
        assert.strictEqual(task.idempotency_key, `${oldest.idempotency_key}#replay1`)
        yield* poll(
          call(urlB, "GET", `/admin/tasks/${task.id}`, { key }),
          (r) => r.body.task?.status === "succeeded",
          "the replay delivered"
        )
        const again = yield* call(urlB, "POST", `/admin/tasks/${oldest.id}/replay`, { key })
        assert.strictEqual(again.status, 409)
        assert.include(again.body.error.message, `already replayed as task ${task.id}`)
        const replayOfDone = yield* call(urlB, "POST", `/admin/tasks/${task.id}/replay`, { key })
        assert.strictEqual(replayOfDone.status, 409)
        assert.include(replayOfDone.body.error.message, "only failed or cancelled")
        // Exactly one delivery to bob, with the new key; none to carol.
        yield* Effect.sleep(Duration.millis(500))
        const delivered = log.filter((d) => !d.isEcho && d.channel === "beta")
        assert.deepStrictEqual(delivered.map((d) => [d.nativeId, d.key]), [["bob", task.idempotency_key]])
        assert.include(delivered[0]!.text, "tell bob 1")
        assert.strictEqual(replayKey(`${oldest.idempotency_key}#replay1`), `${oldest.idempotency_key}#replay2`)
        const stillFailed = yield* call(urlA, "GET", "/admin/tasks?status=failed", { key })
        assert.deepStrictEqual(stillFailed.body.tasks.map((t: any) => t.id), [newest.id, oldest.id])

        // Two replays of one dead letter racing through both runners store one message: one more delivery.
        const racing = yield* Effect.all(
          [urlA, urlB, urlA, urlB].map((base) => call(base, "POST", `/admin/tasks/${newest.id}/replay`, { key })),
          { concurrency: "unbounded" }
        )
        for (const r of racing) assert.include([202, 409], r.status, JSON.stringify(r.body))
        const replays = new Set(racing.filter((r) => r.status === 202).map((r) => r.body.task.id))
        assert.strictEqual(replays.size, 1, "one replay message")
        yield* poll(
          Effect.sync(() => log.filter((d) => !d.isEcho && d.key === `${newest.idempotency_key}#replay1`).length),
          (n) => n === 1,
          "the raced replay delivered"
        )
        yield* Effect.sleep(Duration.millis(500))
        assert.strictEqual(log.filter((d) => !d.isEcho && d.channel === "beta").length, 2, "each replay delivered once")
        const succeeded = yield* call(urlB, "GET", "/admin/tasks?status=succeeded", { key })
        assert.strictEqual(
          succeeded.body.tasks.filter((t: any) => t.destination === "beta:bob").length,
          2,
          JSON.stringify(succeeded.body)
        )

        // Same admin auth and input checks as on one node.
        assert.strictEqual((yield* call(urlA, "GET", "/admin/tasks")).status, 401)
        assert.strictEqual((yield* call(urlA, "POST", `/admin/tasks/${newest.id}/replay`, { key: "x" })).status, 401)
        const badStatus = yield* call(urlA, "GET", "/admin/tasks?status=running", { key })
        assert.strictEqual(badStatus.status, 400)
        assert.include(badStatus.body.error.message, "pending, succeeded, failed, cancelled")
        assert.strictEqual((yield* call(urlA, "GET", "/admin/tasks?after=x%27", { key })).status, 400)
        assert.strictEqual((yield* call(urlA, "GET", "/admin/tasks/nope", { key })).status, 404)
        assert.strictEqual((yield* call(urlA, "GET", "/admin/tasks/123", { key })).status, 404)
        assert.strictEqual((yield* call(urlA, "POST", "/admin/tasks/123/replay", { key })).status, 404)
        assert.strictEqual((yield* call(urlA, "POST", "/admin/tasks/nope/cancel", { key })).status, 404)
      }),
    { timeout: 90_000 }
  )
})
