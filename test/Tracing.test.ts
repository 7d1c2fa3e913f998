import { assert, describe, it } from "@effect/vitest"
import type { Tracer } from "effect"
import { Effect, Layer } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as CollectingTracer from "./utils/CollectingTracer.js"
import * as TestHost from "./utils/TestHost.js"

/** Runs a blocking and a streaming Invocations turn on a host with `tracing`; the spans it started. */
const spansOf = (tracing: boolean) =>
  Effect.gen(function*() {
    const { spans, tracer } = yield* CollectingTracer.make
    yield* Effect.gen(function*() {
      const host = (yield* Layer.build(TestHost.layer({ channels: [Invocations.make()], settings: { tracing } })))
        .unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      for (const stream of [false, true]) {
        const response = yield* Effect.promise(() =>
          fetch(`${host.url}/invocations`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message: "hi", stream })
          }).then((r) => r.text())
        )
        assert.include(response, "hi")
      }
      yield* Effect.promise(() => fetch(`${host.url}/nope`))
    }).pipe(Effect.withTracer(tracer))
    return spans
  })

describe("Tracing (AGENT_HOST_TRACING)", () => {
  it.scoped("on: each routed request is a server span, each turn an agent_host.turn span under it", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(true)
      const requests = spans.filter((s) => s.name === "http.server POST")
      assert.strictEqual(requests.length, 2)
      for (const request of requests) {
        assert.strictEqual(request.kind, "server")
        assert.strictEqual(request.attributes.get("http.route"), "/invocations")
        assert.strictEqual(request.attributes.get("http.status_code"), 200)
      }
      const turns = spans.filter((s) => s.name === "agent_host.turn")
      assert.strictEqual(turns.length, 2)
      for (const turn of turns) {
        assert.strictEqual(turn.attributes.get("agent_host.channel"), "invocations")
        assert.isTrue(turn.parent._tag === "Some" && requests.includes(turn.parent.value as Tracer.Span))
      }
      // The 404 is answered before any route runs: no span.
      assert.isFalse(spans.some((s) => s.name === "http.server GET"))
    }))

  it.scoped("off (the default): no request or turn spans", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(false)
      assert.isFalse(spans.some((s) => s.name.startsWith("http.server") || s.name === "agent_host.turn"))
    }))
})
