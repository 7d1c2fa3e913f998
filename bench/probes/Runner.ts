/**
 * Durable runner figures, in-process, for when `src/TaskRunner.ts` exists:
 *   tsx bench/probes/Runner.ts throughput <tasks>        tasks/s through `layerMemory`
 *   tsx bench/probes/Runner.ts fill <tasks> <dir>        schedules never-finishing tasks on `layerSqlite`, exits
 *   tsx bench/probes/Runner.ts resume <tasks> <dir>      time until every pending task has run after a restart
 * Prints one JSON line: the figures, or `{ "skip": why }` when the module's shape is not the one expected:
 * a `TaskRunner` tag whose service has `register(name, handler)` and `schedule(name, payload)` (effects or plain
 * values), `layerMemory` (a Layer) and `layerSqlite(options)` (options with the state dir / file).
 */
import { Context, Deferred, Duration, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as HostConfig from "../../src/HostConfig.js"
import * as StateStore from "../../src/StateStore.js"

const [mode = "throughput", countArg = "10000", dir = ""] = process.argv.slice(2)
const count = Number(countArg)
const modulePath = Path.resolve(import.meta.dirname, "../../src/TaskRunner.ts")

const print = (value: unknown) => {
  console.log(JSON.stringify(value))
  process.exit(0)
}

interface RunnerLike {
  readonly register: (name: string, handler: (payload: unknown) => Effect.Effect<unknown, unknown>) => unknown
  readonly schedule: (name: string, payload: unknown) => unknown
  readonly resume?: unknown
}

const lift = (value: unknown): Effect.Effect<unknown, unknown> =>
  Effect.isEffect(value) ? value as Effect.Effect<unknown, unknown> : Effect.succeed(value)

let started = 0

const main = async () => {
  if (!Fs.existsSync(modulePath)) return print({ skip: "src/TaskRunner.ts does not exist" })
  const mod = (await import(modulePath)) as Record<string, unknown>
  const tag = mod.TaskRunner
  if (!Context.isTag(tag)) return print({ skip: "src/TaskRunner.ts exports no TaskRunner tag" })
  let runnerLayer: unknown
  if (mode === "throughput") runnerLayer = mod.layerMemory
  else if (typeof mod.layerSqlite === "function") {
    const file = Path.join(dir, "runner.db")
    runnerLayer = (mod.layerSqlite as (o: unknown) => unknown)({ stateDir: dir, dir, path: file, filename: file })
  }
  if (!Layer.isLayer(runnerLayer)) {
    return print({ skip: `src/TaskRunner.ts has no ${mode === "throughput" ? "layerMemory" : "layerSqlite(options)"}` })
  }
  const deps = Layer.merge(StateStore.layerMemory, HostConfig.layer())
  const provided = Layer.provide(runnerLayer as Layer.Layer<unknown, unknown, never>, deps)

  const program = Effect.gen(function*() {
    const runner = (yield* (tag as Context.Tag<unknown, unknown>)) as RunnerLike
    if (typeof runner.register !== "function" || typeof runner.schedule !== "function") {
      return { skip: "the TaskRunner service has no register(name, handler) / schedule(name, payload)" }
    }
    const done = yield* Deferred.make<void>()
    let handled = 0
    const handler = mode === "fill" ?
      () => Effect.never :
      () =>
        Effect.sync(() => {
          handled++
          if (handled === count) Deferred.unsafeDone(done, Effect.void)
        })
    yield* lift(runner.register("bench", handler))
    // resume counts from before the runner's layer was built: resuming may start there.
    const t0 = mode === "resume" ? started : performance.now()
    if (mode !== "resume") {
      for (let i = 0; i < count; i++) yield* lift(runner.schedule("bench", { i }))
    } else if (typeof runner.resume === "function") {
      yield* lift((runner.resume as () => unknown)())
    }
    if (mode === "fill") return { filled: count }
    const finished = yield* Deferred.await(done).pipe(Effect.timeout(Duration.seconds(60)), Effect.either)
    const ms = performance.now() - t0
    if (finished._tag === "Left") return { skip: `only ${handled} of ${count} tasks ran within 60 s` }
    return mode === "throughput"
      ? { tasks: count, tasksPerSecond: count / (ms / 1_000) }
      : { tasks: count, resumeMs: ms }
  })

  started = performance.now()
  const result = await Effect.runPromise(
    program.pipe(
      Effect.scoped,
      Effect.provide(provided),
      Effect.catchAllCause((cause) => Effect.succeed({ skip: `the runner failed: ${String(cause).slice(0, 300)}` }))
    ) as Effect.Effect<unknown>
  )
  // fill: exit without shutting the runner down, as a crash would, leaving every task pending.
  print(result)
}

void main().catch((error) => print({ skip: `the runner probe failed: ${String(error).slice(0, 300)}` }))
