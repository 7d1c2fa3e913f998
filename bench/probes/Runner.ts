/**
 * Durable runner figures, in-process, on the host's real state database (`bench/taskrunner.ts`):
 *   tsx bench/probes/Runner.ts throughput <tasks> <dir>  no-op tasks scheduled+completed per second (512 loops)
 *   tsx bench/probes/Runner.ts throughput-fork <tasks> <dir>  the same, a fiber forked per task (the old harness)
 *   tsx bench/probes/Runner.ts fill <tasks> <dir>        schedules never-finishing tasks, exits without shutdown
 *   tsx bench/probes/Runner.ts resume <tasks> <dir>      reopens the database: time until every task has run
 * Prints one JSON line: the figures, or `{ "skip": why }`.
 */
import { Deferred, Duration, Effect, Layer, Logger, LogLevel } from "effect"
import * as TaskRunner from "../../src/delivery/TaskRunner.js"
import { countingHandler, drained, Noop, sqliteRunner, throughput } from "../taskrunner.js"

const [mode = "throughput", countArg = "10000", dir = ""] = process.argv.slice(2)
const count = Number(countArg)

const print = (value: unknown) => {
  console.log(JSON.stringify(value))
  process.exit(0)
}

const fill = Effect.gen(function*() {
  const runner = yield* TaskRunner.TaskRunner
  yield* runner.register(Noop, () => Effect.never)
  yield* runner.start
  yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => runner.schedule(Noop, i), {
    concurrency: 512,
    discard: true
  })
  // Exits here, without closing the scope, as a crash would: every task is left pending or running.
  yield* Effect.sync(() => {
    print({ filled: count })
  })
  return { filled: count }
})

// Times from before the layer is built: opening the database and reading the pending rows are part of resuming.
const resume = (t0: number, cpu0: NodeJS.CpuUsage) =>
  Effect.gen(function*() {
    const runner = yield* TaskRunner.TaskRunner
    const { done, state } = yield* countingHandler(count)
    yield* runner.start
    const startedMs = performance.now() - t0
    const ran = yield* Deferred.await(done).pipe(Effect.timeout(Duration.seconds(60)), Effect.either)
    if (ran._tag === "Left") return { skip: `only ${state.finished} of ${count} resumed tasks ran within 60 s` }
    yield* drained
    const resumeMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    return { tasks: count, startMs: startedMs, resumeMs, cpuMs: (cpu.user + cpu.system) / 1_000 }
  })

const main = (): Effect.Effect<unknown, unknown> => {
  if (dir === "") return Effect.succeed({ skip: "usage: Runner.ts <mode> <tasks> <dir>" })
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const program: Effect.Effect<unknown, unknown, TaskRunner.TaskRunner> = mode === "fill"
    ? fill
    : mode === "resume"
    ? resume(t0, cpu0)
    : throughput(count, mode === "throughput-fork" ? "fork" : "loops")
  return Effect.flatMap(Layer.build(sqliteRunner(dir)), (context) => Effect.provide(program, context)).pipe(
    Effect.scoped
  )
}

void Effect.runPromise(
  main().pipe(
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.catchAllCause((cause) => Effect.succeed({ skip: `the runner failed: ${String(cause).slice(0, 300)}` }))
  )
).then(print, (error: unknown) => print({ skip: `the runner probe failed: ${String(error).slice(0, 300)}` }))
