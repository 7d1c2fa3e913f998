/**
 * Cluster mode in one process: two runners (each a whole host: HTTP, channels, `Turns`, sharding on its own cluster
 * socket) on one Postgres database (the run's private server, test/utils/Postgres.ts). A turn received by either
 * host runs on the runner owning its key, one at a time and in order with one history; streams are forwarded; a
 * turn id is admitted once; a push is a persisted message delivered once, by the owner of its destination.
 */
import { EntityId } from "@effect/cluster/EntityId"
import * as Sharding from "@effect/cluster/Sharding"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, Schedule, Scope, Stream } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Cluster from "../src/cluster/Cluster.js"
import * as AgentHost from "../src/core/AgentHost.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import type { Turn } from "../src/core/Target.js"
import { Target } from "../src/core/Target.js"
import { Turns } from "../src/core/Turns.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import type { IsolationKey } from "../src/domain/Ids.js"
import type { AgentResponse } from "../src/domain/Message.js"
import { assistantMessage, responseText, userMessage } from "../src/domain/Message.js"
import * as PgStateStore from "../src/state/postgres/PgStateStore.js"
import * as ClusterOptions from "./utils/ClusterOptions.js"
import * as Postgres from "./utils/Postgres.js"
import * as PushChannels from "./utils/PushChannels.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const inputText = (turn: Turn) =>
  turn.input.map((m) => m.contents.map((c) => c._tag === "text" ? c.text : "").join("")).join("")

/** Runners that began a `slow` turn (which then takes `slowTurn`). */
const slowBegun: Array<string> = []
const slowTurn = Duration.seconds(4)

/** Answers `<runner>:<messages in history before this turn>:<input>`: where the turn ran and what it saw. */
const labelled = (label: string) =>
  Layer.succeed(Target, {
    kind: "agent",
    name: "labelled",
    run: (turn) =>
      Effect.suspend(() => {
        const response: AgentResponse = {
          messages: [assistantMessage(`${label}:${turn.history.length}:${inputText(turn)}`)]
        }
        const done = Effect.succeed({ response, result: response })
        if (inputText(turn) !== "slow") return done
        slowBegun.push(label)
        return Effect.zipRight(Effect.sleep(slowTurn), done)
      }),
    stream: (turn) => {
      const updates = Stream.make(
        { contents: [{ _tag: "text" as const, text: `${label}:` }], messageId: "m" },
        { contents: [{ _tag: "text" as const, text: `${turn.history.length}:${inputText(turn)}` }], messageId: "m" }
      )
      if (inputText(turn) !== "slow") return updates
      return Stream.concat(
        Stream.drain(
          Stream.fromEffect(Effect.zipRight(Effect.sync(() => slowBegun.push(label)), Effect.sleep(slowTurn)))
        ),
        updates
      )
    }
  })

const deliveries: Array<PushChannels.Delivery> = []

const runner = (label: string, url: string, runnerPort: number, shutdownGrace = Duration.seconds(10)) => {
  // Local turns pass the wire schemas too, so what a remote runner would refuse fails here.
  const options = ClusterOptions.make(url, runnerPort, { simulateRemoteSerialization: true })
  return AgentHost.layer({
    channels: [PushChannels.make("alpha", deliveries), PushChannels.make("beta", deliveries)]
  }).pipe(
    Layer.provideMerge(Cluster.layerCore(options, HostLayers.layerCoreWith({ push: Cluster.Pushes.layer }))),
    Layer.provide(labelled(label)),
    Layer.provide(PgStateStore.layer({ url: Redacted.make(url), maxConnections: 4 })),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", shutdownGrace }))
  )
}

const request = (key: string, text: string, stream = false): ChannelRequest => ({
  channel: "test",
  operation: "message.create",
  input: [userMessage(text)],
  session: { isolationKey: key as IsolationKey },
  stream
})

const say = (url: string, channel: string, body: Record<string, unknown>) =>
  Effect.promise(async () => {
    const r = await fetch(`${url}/${channel}/say`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
    if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`)
    return (await r.json()) as { reply: string | null }
  })

const post = (url: string, body: Record<string, unknown>) =>
  Effect.promise(async () => {
    try {
      const r = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      return { status: r.status, body: await r.text() }
    } catch (e) {
      return { status: 0, body: String(e) }
    }
  })

/** Another server on the host's request handler (as when embedded): still reachable while the host drains. */
const embedded = (handler: AgentHost.AgentHost["Type"]["handler"]) =>
  Effect.acquireRelease(
    Effect.async<{ server: Http.Server; url: string }>((resume) => {
      const server = Http.createServer(handler)
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          url: `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`
        })))
    }),
    ({ server }) => Effect.sync(() => server.close())
  )

/**
 * Runner A, and runner B (in a scope of its own, to stop it) with `grace`, reached also through another server on
 * its handler; a session (`alpha` channel key) owned by A.
 */
const receivingHost = (grace: Duration.Duration) =>
  Effect.gen(function*() {
    const url = yield* Postgres.database
    yield* Layer.build(runner("A", url, yield* ServerProcess.freePort))
    const scopeB = yield* Scope.make()
    const b = yield* Layer.buildWithScope(runner("B", url, yield* ServerProcess.freePort, grace), scopeB)
    yield* Effect.addFinalizer(() => Scope.close(scopeB, Exit.void))
    yield* Effect.sleep(Duration.seconds(3))
    const sessions: Array<string> = []
    for (let i = 0; sessions.length < 1 && i < 40; i++) {
      const probe = yield* ctxOf(b).run(request(`shared:drain${i}`, "probe"))
      if (responseText(probe.result.response).startsWith("A:")) sessions.push(`drain${i}`)
    }
    assert.strictEqual(sessions.length, 1, "a key owned by A")
    const hostB = Context.get(b, AgentHost.AgentHost)
    const other = yield* embedded(hostB.handler)
    return { b, hostB, other, scopeB, sessions }
  })

const awaitBegun = (count: number) =>
  Effect.suspend(() => slowBegun.length >= count ? Effect.void : Effect.fail("waiting")).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(20)).pipe(Schedule.upTo(Duration.seconds(20)))),
    Effect.orDie
  )

const twoRunners = Effect.gen(function*() {
  const url = yield* Postgres.database
  const portA = yield* ServerProcess.freePort
  const portB = yield* ServerProcess.freePort
  const a = yield* Layer.build(runner("A", url, portA))
  const b = yield* Layer.build(runner("B", url, portB))
  // Let both runners see each other and settle the shard assignment (a few refreshes of 500 ms).
  yield* Effect.sleep(Duration.seconds(3))
  return { a, b, idA: `127.0.0.1:${portA}` }
})

const ctxOf = (context: Context.Context<Turns>) => Context.get(context, Turns).contextFor("test")

describe("Cluster (two runners in one process)", () => {
  it.scopedLive(
    "a turn received by either runner runs on its key's owner, in order, with one history",
    () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoRunners
        const owners = new Set<string>()
        for (let k = 0; k < 12; k++) {
          const key = `k${k}`
          const seen: Array<string> = []
          for (let i = 0; i < 4; i++) {
            const via = i % 2 === 0 ? a : b
            const outcome = yield* ctxOf(via).run(request(key, `t${i}`))
            seen.push(responseText(outcome.result.response))
          }
          const owner = seen[0]!.split(":")[0]!
          owners.add(owner)
          // The same runner ran every turn; each saw the whole history before it (2 messages per turn).
          assert.deepStrictEqual(seen, [0, 1, 2, 3].map((i) => `${owner}:${2 * i}:t${i}`), key)
        }
        assert.deepStrictEqual([...owners].sort(), ["A", "B"], "the keys are spread over both runners")
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("concurrent turns of one key from both runners run one at a time", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoRunners
      const outcomes = yield* Effect.forEach(
        [0, 1, 2, 3, 4, 5],
        (i) => ctxOf(i % 2 === 0 ? a : b).run(request("busy", `c${i}`)),
        { concurrency: "unbounded" }
      )
      const seenBefore = outcomes.map((o) => Number(responseText(o.result.response).split(":")[1])).sort((x, y) =>
        x - y
      )
      assert.deepStrictEqual(seenBefore, [0, 2, 4, 6, 8, 10])
    }), { timeout: 60_000 })

  it.scopedLive(
    "a stream is forwarded: its updates and outcome reach the runner that received it",
    () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoRunners
        for (const key of ["s0", "s1", "s2", "s3"]) {
          for (const via of [a, b]) {
            const turn = yield* ctxOf(via).runStream(request(key, "go", true))
            const updates = yield* Stream.runCollect(turn.updates)
            const text = [...updates].flatMap((u) => u.contents.map((c) => c._tag === "text" ? c.text : "")).join("")
            const outcome = yield* turn.result
            assert.strictEqual(responseText(outcome.result.response), text)
            assert.match(text, /^[AB]:\d+:go$/)
          }
        }
      }),
    { timeout: 60_000 }
  )

  for (const stream of [false, true]) {
    it.scopedLive(
      `shutdown waits for the turns this runner forwarded (${
        stream ? "a stream" : "a turn"
      }): a slow one's caller gets its reply, new requests a 503`,
      () =>
        Effect.gen(function*() {
          const { hostB, other, scopeB, sessions } = yield* receivingHost(Duration.seconds(10))
          const begun = slowBegun.length
          const slow = yield* Effect.fork(
            post(`${hostB.url}/alpha/say`, { text: "slow", user: "u", session: sessions[0], stream })
          )
          yield* awaitBegun(begun + 1)
          assert.strictEqual(slowBegun[begun], "A", "the slow turn runs on A")
          const stopStarted = yield* Clock.currentTimeMillis
          const stopping = yield* Effect.fork(Scope.close(scopeB, Exit.void))
          // While B drains, a new request is refused as on one node.
          const refused = yield* post(`${other.url}/alpha/say`, { text: "late", user: "u", session: "drain-late" })
            .pipe(
              Effect.delay(Duration.millis(20)),
              Effect.repeat({ until: (r) => r.status !== 200 })
            )
          assert.strictEqual(refused.status, 503, refused.body)
          assert.include(refused.body, "shutting_down")
          // The forwarded turn outlives the close margin (2 s) B would otherwise wait: its caller gets the reply.
          const reply = yield* Fiber.join(slow)
          assert.strictEqual(reply.status, 200, reply.body)
          assert.deepStrictEqual(JSON.parse(reply.body), { reply: "A:2:slow" })
          yield* Fiber.join(stopping)
          const stoppedIn = (yield* Clock.currentTimeMillis) - stopStarted
          assert.isAbove(stoppedIn, Duration.toMillis(slowTurn) / 2, "B waited for the forwarded turn")
        }),
      { timeout: 60_000 }
    )
  }

  it.scopedLive(
    "after the grace a forwarded turn's caller gets the shutdown 503, without waiting for the turn",
    () =>
      Effect.gen(function*() {
        const { hostB, scopeB, sessions } = yield* receivingHost(Duration.seconds(1))
        const begun = slowBegun.length
        const slow = yield* Effect.fork(
          post(`${hostB.url}/alpha/say`, { text: "slow", user: "u", session: sessions[0] })
        )
        yield* awaitBegun(begun + 1)
        const stopStarted = yield* Clock.currentTimeMillis
        yield* Scope.close(scopeB, Exit.void)
        const stoppedIn = (yield* Clock.currentTimeMillis) - stopStarted
        const reply = yield* Fiber.join(slow)
        assert.strictEqual(reply.status, 503, reply.body)
        assert.include(reply.body, "shutting down")
        assert.isBelow(stoppedIn, Duration.toMillis(slowTurn), "B stopped without waiting for the turn")
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "a forwarded turn id is admitted once (a resend after its runner died is refused); a runner's own turn writes no mark",
    () =>
      Effect.gen(function*() {
        const { a, idA } = yield* twoRunners
        const clientFor = yield* Effect.provide(Cluster.SessionEntity.SessionEntity.client, a)
        // Sent as if received by another runner: whichever runner owns the key, it is a forwarded turn.
        const payload = {
          turnId: "turn_fixed",
          from: "elsewhere:1",
          channel: "test",
          request: request("once", "hello")
        }
        const first = yield* clientFor("once").Run(payload)
        assert.strictEqual(first.result.response.messages.length, 1)
        // A runner's own turn is not written to the store on the way (no resend can outlive it): its id stays new.
        const sharding = Context.get(a, Sharding.Sharding)
        const ownKey = Array.from({ length: 200 }, (_, i) => `own${i}`).find((key) =>
          sharding.hasShardId(sharding.getShardId(EntityId.make(key), "default"))
        )!
        const own = yield* clientFor(ownKey).Run({
          turnId: "turn_own",
          from: idA,
          channel: "test",
          request: request(ownKey, "mine")
        })
        assert.strictEqual(responseText(own.result.response), "A:0:mine")
        // The same id forwarded by another runner is admitted: the own turn left no mark to refuse it by.
        const forwarded = yield* clientFor(ownKey).Run({
          turnId: "turn_own",
          from: "elsewhere:1",
          channel: "test",
          request: request(ownKey, "again")
        })
        assert.strictEqual(responseText(forwarded.result.response), "A:2:again")
        const again = yield* Effect.exit(clientFor("once").Run(payload))
        assert.isTrue(Exit.isFailure(again))
        const failure = Exit.isFailure(again) ?
          Option.getOrUndefined(
            Exit.causeOption(again).pipe(
              Option.flatMap((cause) => Option.fromNullable((cause as { error?: unknown }).error))
            )
          ) :
          undefined
        assert.include(JSON.stringify(failure), "stopped before it finished")
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "a push is a persisted message delivered once, whichever runner received the turn",
    () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoRunners
        const urlA = Context.get(a, AgentHost.AgentHost).url
        const urlB = Context.get(b, AgentHost.AgentHost).url
        const start = deliveries.length
        for (let i = 0; i < 6; i++) {
          yield* say(urlA, "beta", { text: "hi", user: `friend${i}`, session: `p${i}` })
          const sent = yield* say(i % 2 === 0 ? urlA : urlB, "alpha", {
            text: `to beta ${i}`,
            user: `me${i}`,
            session: `p${i}`,
            target: { kind: "channels", targets: ["beta"] }
          })
          assert.isNull(sent.reply)
        }
        yield* Effect.suspend(() => deliveries.length - start < 6 ? Effect.fail("waiting") : Effect.void).pipe(
          Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(Duration.seconds(20)))),
          Effect.ignore
        )
        // A second delivery of any of them would land within this.
        yield* Effect.sleep(Duration.seconds(1))
        const got = deliveries.slice(start)
        assert.deepStrictEqual(got.map((d) => d.nativeId).sort(), [0, 1, 2, 3, 4, 5].map((i) => `friend${i}`))
        assert.strictEqual(new Set(got.map((d) => d.key)).size, 6, "no push delivered twice")
      }),
    { timeout: 60_000 }
  )
})
