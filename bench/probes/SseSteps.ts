/**
 * Effect steps and CPU per streamed request, in process: `npx tsx bench/probes/SseSteps.ts [requests=1000]
 * [concurrency=10]`. The streaming twin of `TurnSteps.ts` (the bench's `responses-sse` and `invocations-sse`
 * bodies: 50 events per stream), counted the same way.
 * Builds the `npm start` composition (`Server.layerFromEnv`, SQLite state in a temp dir, default agent), then
 * sends `POST /invocations {"message":<36 words>,"stream":true}` and `POST /v1/responses` (29 words) over loopback
 * keep-alive connections, three measured rounds each after a warm-up. Steps are counted by a supervisor (every
 * instruction any fiber evaluates, the state writer's included), so the figure does not move with the load on the
 * machine, unlike time; CPU per request is the whole process's (client included, and slowed by the counting), so
 * compare it only between runs of this probe.
 */
import { runStepsProbe } from "../lib/StepsProbe.js"

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ")

runStepsProbe({
  defaultRequests: 1_000,
  unit: "stream",
  scenarios: [
    ["invocations-sse", "/invocations", JSON.stringify({ message: words(36), stream: true })],
    ["responses-sse", "/v1/responses", JSON.stringify({ model: "x", input: words(29), stream: true })]
  ]
})
