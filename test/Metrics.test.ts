import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Metric, MetricBoundaries } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as AgentHost from "../src/core/AgentHost.js"
import { PushFailed } from "../src/core/Channel.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as DurablePush from "../src/delivery/DurablePush.js"
import * as MetricsRoute from "../src/delivery/MetricsRoute.js"
import * as Prometheus from "../src/internal/Prometheus.js"
import * as StateStore from "../src/state/StateStore.js"
import * as PushChannels from "./utils/PushChannels.js"

/** One parsed sample: `name{labels} value`. */
interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

// The exposition grammar, strictly: every line is a HELP, a TYPE, or a sample with well-formed labels.
const helpLine = /^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/
const typeLine = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/
const sampleLine =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,(?!\}))?)*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g

const unescape = (value: string) => value.replace(/\\(["\\n])/g, (_, c: string) => c === "n" ? "\n" : c)

const parse = (text: string): { samples: Array<Sample>; types: Map<string, string> } => {
  assert.isTrue(text.endsWith("\n"), "the exposition ends with a line feed")
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      assert.match(line, helpLine)
      continue
    }
    const type = typeLine.exec(line)
    if (type !== null) {
      assert.isFalse(types.has(type[1]!), `one TYPE line per metric: ${type[1]}`)
      types.set(type[1]!, type[2]!)
      continue
    }
    const match = sampleLine.exec(line)
    assert.isNotNull(match, `not a valid sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match![2] ?? "").matchAll(labelPair)) labels[key!] = unescape(value!)
    const raw = match![3]!
    samples.push({ name: match![1]!, labels, value: raw === "+Inf" ? Infinity : Number(raw) })
  }
  return { samples, types }
}

const valueOf = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string> = {}): number =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0)

describe("Prometheus format", () => {
  it("escapes label values, sanitizes names, renders cumulative histogram buckets with _sum and _count", () => {
    const counter = Metric.counter("test_prom.escaping_total", { description: "with \\ and\nnewline" }).pipe(
      Metric.tagged("who", "a \"quoted\"\nvalue\\")
    )
    const histogram = Metric.histogram(
      "test_prom_latency_seconds",
      MetricBoundaries.fromIterable([0.1, 1])
    ).pipe(Metric.tagged("channel", "x"))
    Effect.runSync(Effect.all([
      Metric.increment(counter),
      Metric.update(histogram, 0.05),
      Metric.update(histogram, 0.5),
      Metric.update(histogram, 5)
    ]))
    const text = Prometheus.format(Metric.unsafeSnapshot())
    const { samples, types } = parse(text)
    assert.strictEqual(types.get("test_prom_escaping_total"), "counter")
    assert.include(text, "# HELP test_prom_escaping_total with \\\\ and\\nnewline\n")
    assert.strictEqual(valueOf(samples, "test_prom_escaping_total", { who: "a \"quoted\"\nvalue\\" }), 1)
    assert.strictEqual(types.get("test_prom_latency_seconds"), "histogram")
    const buckets = samples.filter((s) => s.name === "test_prom_latency_seconds_bucket")
    assert.deepStrictEqual(buckets.map((b) => [b.labels.le, b.value]), [["0.1", 1], ["1", 2], ["+Inf", 3]])
    assert.strictEqual(valueOf(samples, "test_prom_latency_seconds_count"), 3)
    assert.closeTo(valueOf(samples, "test_prom_latency_seconds_sum"), 5.55, 1e-9)
    // Two scrapes of the same state are the same bytes.
    assert.strictEqual(Prometheus.format(Metric.unsafeSnapshot()), text)
  })
})

const log: Array<PushChannels.Delivery> = []
const key = "metrics-admin-key"

const hostLayer = AgentHost.layer({
  channels: [
    Invocations.make(),
    MetricsRoute.make(),
    PushChannels.make("alpha", log),
    PushChannels.make("beta", log, {
      fail: () => new PushFailed({ reason: "rejected", retryable: false, message: "403 bot was blocked" })
    })
  ]
}).pipe(
  Layer.provideMerge(HostLayers.layerCoreWith({ push: DurablePush.layerMemory })),
  Layer.provide(DefaultAgent.layer),
  Layer.provide(StateStore.layerMemory),
  Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", adminKeys: [key] }))
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
      return { status: r.status, contentType: r.headers.get("content-type"), body: await r.text() }
    }))

const scrape = Effect.map(call("GET", "/metrics", { key }), (r) => {
  assert.strictEqual(r.status, 200)
  assert.strictEqual(r.contentType, Prometheus.contentType)
  return parse(r.body)
})

describe("GET /metrics", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("needs an admin key", () =>
      Effect.gen(function*() {
        assert.strictEqual((yield* call("GET", "/metrics")).status, 401)
        assert.strictEqual((yield* call("GET", "/metrics", { key: "wrong" })).status, 401)
      }))

    it.effect("scraped after turns and a failed push: requests, turns, latency, pushes, tasks and gauges moved", () =>
      Effect.gen(function*() {
        const before = (yield* scrape).samples
        for (let i = 0; i < 3; i++) {
          assert.strictEqual((yield* call("POST", "/invocations", { body: { message: `hi ${i}` } })).status, 200)
        }
        assert.strictEqual((yield* call("POST", "/invocations", { body: "not an object" })).status, 422)
        yield* call("POST", "/alpha/say", {
          body: { text: "tell bob", user: "al", session: "m1", target: { kind: "channels", targets: ["beta"] } }
        })
        yield* call("POST", "/beta/say", { body: { text: "hi", user: "bob", session: "m1" } })
        yield* call("POST", "/alpha/say", {
          body: { text: "tell bob", user: "al", session: "m1", target: { kind: "channels", targets: ["beta"] } }
        })
        let after = yield* scrape
        for (let i = 0; i < 200 && valueOf(after.samples, "agent_host_tasks_dead_total") === 0; i++) {
          yield* Effect.sleep("10 millis")
          after = yield* scrape
        }
        const { samples, types } = after
        const delta = (name: string, labels: Record<string, string> = {}) =>
          valueOf(samples, name, labels) - valueOf(before, name, labels)

        assert.strictEqual(types.get("agent_host_http_requests_total"), "counter")
        assert.strictEqual(delta("agent_host_http_requests_total", { channel: "invocations", status: "200" }), 3)
        assert.strictEqual(delta("agent_host_http_requests_total", { channel: "invocations", status: "422" }), 1)
        assert.isAtLeast(delta("agent_host_http_requests_total", { channel: "metrics", status: "200" }), 1)
        assert.strictEqual(delta("agent_host_turns_total", { channel: "invocations" }), 3)

        assert.strictEqual(types.get("agent_host_turn_duration_seconds"), "histogram")
        assert.strictEqual(delta("agent_host_turn_duration_seconds_count", { channel: "invocations" }), 3)
        const buckets = samples.filter((s) =>
          s.name === "agent_host_turn_duration_seconds_bucket" && s.labels.channel === "invocations"
        )
        assert.isAtLeast(buckets.length, 2)
        assert.strictEqual(buckets.at(-1)!.labels.le, "+Inf")
        for (let i = 1; i < buckets.length; i++) assert.isAtLeast(buckets[i]!.value, buckets[i - 1]!.value)

        assert.strictEqual(delta("agent_host_pushes_total", { channel: "beta", outcome: "failed" }), 1)
        assert.strictEqual(delta("agent_host_tasks_dead_total", { name: "hosting.push" }), 1)
        assert.strictEqual(delta("agent_host_task_attempts_failed_total", { name: "hosting.push" }), 1)

        for (const gauge of ["agent_host_sessions_live", "agent_host_turns_queued", "agent_host_tasks_pending"]) {
          assert.strictEqual(types.get(gauge), "gauge")
        }
        assert.isAtLeast(valueOf(samples, "agent_host_sessions_live"), 1)
        // Labels name channels and task kinds; no session key ("shared:m1") or message text appears.
        const text = (yield* call("GET", "/metrics", { key })).body
        assert.notInclude(text, "shared:m1")
        assert.notInclude(text, "tell bob")
      }))
  })
})
