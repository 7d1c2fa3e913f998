/**
 * Effect steps and CPU per request, in process: `npx tsx bench/probes/TurnSteps.ts [requests=2000] [concurrency=10]`.
 * Builds the `npm start` composition (`Server.layerFromEnv`, SQLite state in a temp dir, default agent), then
 * sends `POST /invocations {"message":"hi"}` and `POST /v1/responses {"model":"x","input":"hi"}` over loopback
 * keep-alive connections, three measured rounds each after a warm-up. Steps are counted by a supervisor (every
 * instruction any fiber evaluates, the state writer's included), so the figure does not move with the load on the
 * machine, unlike time; CPU per request is the whole process's (client included, and slowed by the counting), so
 * compare it only between runs of this probe.
 */
import { runStepsProbe } from "../lib/StepsProbe.js"

runStepsProbe({
  defaultRequests: 2_000,
  unit: "req",
  scenarios: [
    ["invocations-json", "/invocations", JSON.stringify({ message: "hi" })],
    ["responses-json", "/v1/responses", JSON.stringify({ model: "x", input: "hi" })]
  ]
})
