import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Option } from "effect"
import * as Http from "node:http"
import * as Invocations from "../src/channels/Invocations.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Telemetry from "../src/Telemetry.js"
import * as TestHost from "./utils/TestHost.js"

interface Export {
  readonly path: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** An OTLP/HTTP receiver on 127.0.0.1: records every export request and answers 200 `{}` (JSON, as sent). */
const receiver = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly exports: Array<Export>; readonly server: Http.Server }>((resume) => {
    const exports: Array<Export> = []
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        exports.push({ path: request.url ?? "", headers: request.headers, body: Buffer.concat(chunks).toString() })
        response.writeHead(200, { "content-type": "application/json" })
        response.end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as { port: number }
      resume(Effect.succeed({ url: `http://127.0.0.1:${address.port}`, exports, server }))
    })
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

interface OtlpSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: { readonly stringValue?: string } }>
}

const spansOf = (exports: ReadonlyArray<Export>): Array<OtlpSpan> =>
  exports.filter((e) => e.path === "/v1/traces").flatMap((e) =>
    (JSON.parse(e.body).resourceSpans as Array<any>).flatMap((rs) =>
      (rs.scopeSpans as Array<any>).flatMap((ss) => ss.spans as Array<OtlpSpan>)
    )
  )

const attribute = (span: OtlpSpan, key: string) => span.attributes.find((a) => a.key === key)?.value.stringValue

describe("Telemetry (OTLP export)", () => {
  it("is off without an endpoint, and reads the standard variables", () =>
    Effect.gen(function*() {
      assert.isTrue(Option.isNone(yield* withEnv({})(Telemetry.config)))
      assert.isTrue(
        Option.isNone(
          yield* withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" })(
            Telemetry.config
          )
        )
      )
      const settings = Option.getOrThrow(
        yield* withEnv({
          OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
          OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "https://metrics.example/v1/m",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc, x-tenant = t1"
        })(Telemetry.config)
      )
      assert.strictEqual(settings.serviceName, "effect-agent-host")
      assert.deepStrictEqual(Option.getOrThrow(settings.traces), {
        url: "http://collector:4318/v1/traces",
        headers: { authorization: "Bearer abc", "x-tenant": "t1" }
      })
      assert.strictEqual(Option.getOrThrow(settings.metrics).url, "https://metrics.example/v1/m")
      assert.isTrue(Option.isNone(settings.logs))
      const bad = yield* Effect.flip(withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })(Telemetry.config))
      assert.include(String(bad), "OTEL_EXPORTER_OTLP_ENDPOINT")
      const badHeaders = yield* Effect.flip(
        withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: "novalue" })(Telemetry.config)
      )
      assert.include(String(badHeaders), "key=value")
    }).pipe(Effect.runPromise))

  it("reads the other variables only when an endpoint is set (what a start reads)", () =>
    Effect.gen(function*() {
      // No endpoint: nothing is exported, so a variable that only matters then is not read.
      assert.isTrue(Option.isNone(yield* withEnv({ OTEL_EXPORTER_OTLP_HEADERS: "novalue" })(Telemetry.settingsFromEnv)))
      assert.isFalse(yield* withEnv({})(Telemetry.tracesExported))
      // A per-signal endpoint alone is enough; then every variable is read and checked as by `config`.
      const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c/t", OTEL_SERVICE_NAME: "svc" }
      assert.deepStrictEqual(yield* withEnv(env)(Telemetry.settingsFromEnv), yield* withEnv(env)(Telemetry.config))
      assert.isTrue(yield* withEnv(env)(Telemetry.tracesExported))
      assert.isFalse(yield* withEnv({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://c/m" })(Telemetry.tracesExported))
      const bad = yield* Effect.flip(
        withEnv({ OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "http://c", OTEL_EXPORTER_OTLP_HEADERS: "novalue" })(
          Telemetry.settingsFromEnv
        )
      )
      assert.include(String(bad), "key=value")
    }).pipe(Effect.runPromise))

  it.scopedLive(
    "a turn's request and turn spans reach an OTLP receiver with channel, operation and a key digest",
    () =>
      Effect.gen(function*() {
        const otlp = yield* receiver
        const sessionId = "secret-session-4242"
        const text = "private words nobody should export"
        yield* Effect.scoped(Effect.gen(function*() {
          const host = (yield* Layer.build(
            TestHost.layer({ channels: [Invocations.make()], settings: { tracing: true } })
          )).unsafeMap.get(AgentHost.key) as AgentHost["Type"]
          const response = yield* Effect.promise(() =>
            fetch(`${host.url}/invocations`, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
              },
              body: JSON.stringify({ message: text, session_id: sessionId })
            })
          )
          assert.strictEqual(response.status, 200)
          yield* Effect.promise(() => response.text())
        })).pipe(
          // Closing the export layer flushes the batches.
          Effect.provide(Telemetry.layerFromEnv),
          withEnv({
            OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
            OTEL_EXPORTER_OTLP_HEADERS: "x-collector-key=k%201",
            OTEL_SERVICE_NAME: "agent-host-under-test",
            OTEL_METRIC_EXPORT_INTERVAL: "600000"
          })
        )

        const traces = otlp.exports.filter((e) => e.path === "/v1/traces")
        assert.isAtLeast(traces.length, 1)
        assert.strictEqual(traces[0]!.headers["x-collector-key"], "k 1")
        assert.include(traces[0]!.headers["content-type"], "application/json")
        assert.include(traces[0]!.body, "agent-host-under-test")
        const spans = spansOf(otlp.exports)
        const request = spans.find((s) => s.name === "http.server POST")
        const turn = spans.find((s) => s.name === "agent_host.turn")
        assert.isDefined(request)
        assert.isDefined(turn)
        // The request continues the caller's trace; the turn is a child of the request.
        assert.strictEqual(request!.traceId.toLowerCase(), "0af7651916cd43dd8448eb211c80319c")
        assert.strictEqual(turn!.parentSpanId, request!.spanId)
        assert.strictEqual(attribute(request!, "http.route"), "/invocations")
        assert.strictEqual(attribute(request!, "agent_host.channel"), "invocations")
        assert.strictEqual(attribute(turn!, "agent_host.channel"), "invocations")
        assert.strictEqual(attribute(turn!, "agent_host.operation"), "invoke")
        assert.match(attribute(turn!, "agent_host.isolation_key_sha256") ?? "", /^[0-9a-f]{16}$/)

        // Metrics and logs went too; nothing exported carries the session id (the key's part) or the message.
        assert.isTrue(otlp.exports.some((e) => e.path === "/v1/metrics" && e.body.includes("agent_host_turns_total")))
        assert.isTrue(otlp.exports.some((e) => e.path === "/v1/logs" && e.body.includes("agent host ready")))
        for (const e of otlp.exports) {
          assert.notInclude(e.body, sessionId)
          assert.notInclude(e.body, text)
        }
      }),
    60_000
  )
})
