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
import {
  ConfigProvider,
  Console,
  Context,
  Effect,
  Exit,
  Layer,
  Logger,
  LogLevel,
  RuntimeFlags,
  RuntimeFlagsPatch,
  Scope
} from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentHost } from "../../src/core/AgentHost.js"
import * as Server from "../../src/Server.js"
import { StepCounter } from "../lib/StepCounter.js"

const requests = Number(process.argv[2] ?? 1_000)
const concurrency = Number(process.argv[3] ?? 10)
const counter = new StepCounter()
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "turn-steps-"))
const config = ConfigProvider.fromMap(
  new Map([["AGENT_HOST_STATE_DIR", dir], ["PORT", String(20000 + (process.pid % 20000))]])
).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })

const post = (url: string, body: string) =>
  new Promise<number>((resolve, reject) => {
    const req = Http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", reject)
    req.end(body)
  })

/** Sends `count` requests, `concurrency` at a time; resolves with how many were not 200. */
const load = async (url: string, body: string, count: number) => {
  let next = 0
  let failed = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < count) if ((await post(url, body)) !== 200) failed++
  }))
  return failed
}

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ")
const scenarios = [
  ["invocations-sse", "/invocations", JSON.stringify({ message: words(36), stream: true })],
  ["responses-sse", "/v1/responses", JSON.stringify({ model: "x", input: words(29), stream: true })]
] as const

const program = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const context = yield* Layer.build(Server.layerFromEnv).pipe(Scope.extend(scope))
  const host = Context.get(context, AgentHost)
  for (const [name, path, body] of scenarios) {
    yield* Effect.promise(() => load(host.url + path, body, requests))
    for (let round = 0; round < 3; round++) {
      const steps = counter.steps
      const cpu = process.cpuUsage()
      const failed = yield* Effect.promise(() => load(host.url + path, body, requests))
      const used = process.cpuUsage(cpu)
      yield* Console.log(
        `${name}: ${((counter.steps - steps) / requests).toFixed(1)} steps/stream, ` +
          `${((used.user + used.system) / requests).toFixed(0)} µs CPU/stream (process), ${failed} failed`
      )
    }
  }
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(
  program.pipe(
    Effect.supervised(counter),
    Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision)),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.withConfigProvider(config)
  )
).finally(() => {
  agent.destroy()
  Fs.rmSync(dir, { recursive: true, force: true })
})
