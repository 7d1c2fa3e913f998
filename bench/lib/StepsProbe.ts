/**
 * The in-process steps probe shared by `bench/probes/TurnSteps.ts` (JSON turns) and `SseSteps.ts` (streams): builds
 * the `npm start` composition (`Server.layerFromEnv`, SQLite state in a temp dir, default agent), sends each
 * scenario's POST over loopback keep-alive connections, and counts Effect steps with a supervisor (every
 * instruction any fiber evaluates, the state writer's included), so the figure does not move with the load on the
 * machine, unlike time; CPU per request is the whole process's (client included, and slowed by the counting), so
 * compare it only between runs of the same probe.
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
import { StepCounter } from "./StepCounter.js"

/** One scenario: a name, a path, a JSON body. */
export type Scenario = readonly [name: string, path: string, body: string]

/**
 * Runs the probe: `requests` (argv[2], else `defaultRequests`) of each scenario, `concurrency` (argv[3], default 10)
 * at a time, after one warm-up round; prints steps and CPU per `unit` for three measured rounds.
 */
export const runStepsProbe = (
  options: { readonly scenarios: ReadonlyArray<Scenario>; readonly defaultRequests: number; readonly unit: string }
) => {
  const requests = Number(process.argv[2] ?? options.defaultRequests)
  const concurrency = Number(process.argv[3] ?? 10)
  const scenarios = options.scenarios
  const counter = new StepCounter()
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "turn-steps-"))
  const config = ConfigProvider.fromMap(
    new Map([["AGENT_HOST_STATE_DIR", dir], ["PORT", String(20000 + (process.pid % 20000))]])
  ).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })

  const post = (url: string, body: string) =>
    new Promise<number>((resolve, reject) => {
      const req = Http.request(
        url,
        { method: "POST", agent, headers: { "content-type": "application/json" } },
        (res) => {
          res.resume()
          res.on("end", () => resolve(res.statusCode ?? 0))
        }
      )
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
          `${name}: ${((counter.steps - steps) / requests).toFixed(1)} steps/${options.unit}, ` +
            `${((used.user + used.system) / requests).toFixed(0)} µs CPU/${options.unit} (process), ${failed} failed`
        )
      }
    }
    yield* Scope.close(scope, Exit.void)
  })

  return Effect.runPromise(
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
}
