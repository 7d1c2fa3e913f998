/**
 * TaskRunner throughput on the host's real state database (`src/state/sqlite/StateDb.ts`: WAL, synchronous=NORMAL,
 * single-owner lock): schedules N no-op tasks and waits until all succeeded.
 * `npx tsx bench/taskrunner.ts [N] [loops|fork] [steps]`: `fork` is the old harness (a fiber forked per task);
 * `steps` also counts Effect steps per task (a supervisor sees every instruction any fiber evaluates, the state
 * writer's included), a figure that does not move with the load on the machine, unlike CPU time.
 * The pieces are exported for `bench/probes/Runner.ts` (the `runner-tasks` / `runner-resume` scenarios).
 */
import type { Fiber } from "effect"
import { Deferred, Effect, FiberId, Layer, RuntimeFlags, RuntimeFlagsPatch, Schedule, Schema, Supervisor } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Url from "node:url"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import * as StateDb from "../src/state/sqlite/StateDb.js"

/** The durable runner on `<dir>/state.db`, opened exactly as `npm start` opens it. */
export const sqliteRunner = (dir: string, options: TaskRunner.Options = {}) =>
  TaskRunner.layerSqlite(options).pipe(Layer.provide(StateDb.layer({ directory: dir })))

export const Noop = TaskRunner.define("bench.noop", Schema.Number)

/** Registers a handler on `Noop` that counts runs; `done` completes once `n` have run. */
export const countingHandler = (n: number) =>
  Effect.gen(function*() {
    const runner = yield* TaskRunner.TaskRunner
    const done = yield* Deferred.make<void>()
    const state = { finished: 0 }
    yield* runner.register(Noop, () =>
      Effect.sync(() => {
        if (++state.finished === n) Deferred.unsafeDone(done, Effect.void)
      }))
    return { done, state }
  })

/** Waits until the runner tracks no unfinished task (every `succeeded` row written). */
export const drained = Effect.gen(function*() {
  const runner = yield* TaskRunner.TaskRunner
  while ((yield* runner.stats).live > 0) yield* Effect.sleep("1 millis")
})

export interface Throughput {
  readonly tasks: number
  readonly scheduledMs: number
  readonly totalMs: number
  readonly tasksPerSecond: number
  /** Process CPU (user + system) from the first schedule until all succeeded, per task: steady on a busy machine. */
  readonly cpuMicrosPerTask: number
}

/**
 * Schedules `n` no-op tasks (512 schedulers at once) and times until all have succeeded. Like `DurablePush`, a
 * scheduler checks `accepting` first (the runner refuses tasks past twice its queue capacity); while it is false,
 * schedulers wait on one shared poller rather than each polling.
 */
/** How the bench's 512 schedulers are made: a loop each over its share (default), or a fiber forked per task. */
export type Harness = "loops" | "fork"

const schedulers = 512

export const throughput = (n: number, harness: Harness = "loops") =>
  Effect.gen(function*() {
    const runner = yield* TaskRunner.TaskRunner
    const { done } = yield* countingHandler(n)
    yield* runner.start
    let room: Deferred.Deferred<void> | undefined
    const poll = (gate: Deferred.Deferred<void>) =>
      Effect.repeat(runner.accepting, { until: (accepting) => accepting, schedule: Schedule.spaced("1 millis") }).pipe(
        Effect.zipRight(Effect.sync(() => {
          room = undefined
          Deferred.unsafeDone(gate, Effect.void)
        }))
      )
    const admitted = Effect.flatMap(runner.accepting, (accepting) => {
      if (accepting) return Effect.void
      if (room !== undefined) return Deferred.await(room)
      const gate = Deferred.unsafeMake<void>(FiberId.none)
      room = gate
      return Effect.zipRight(Effect.forkDaemon(poll(gate)), Deferred.await(gate))
    })
    const scheduleOne = (i: number) => Effect.zipRight(admitted, runner.schedule(Noop, i))
    const start = performance.now()
    const cpu0 = process.cpuUsage()
    if (harness === "fork") {
      yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), scheduleOne, { concurrency: 512, discard: true })
    } else {
      // 512 schedulers, each a loop over its share (task i goes to scheduler i mod 512): still 512 `schedule`
      // calls at once, without a forked fiber per task, which cost about as much as the task itself.
      yield* Effect.forEach(
        Array.from({ length: Math.min(schedulers, n) }, (_, s) => s),
        (s) =>
          Effect.suspend(() => {
            let i = s
            return Effect.whileLoop({
              while: () => i < n,
              body: () => scheduleOne(i),
              step: () => {
                i += schedulers
              }
            })
          }),
        { concurrency: "unbounded", discard: true }
      )
    }
    const scheduled = performance.now()
    yield* Deferred.await(done)
    yield* drained
    const end = performance.now()
    const cpu = process.cpuUsage(cpu0)
    return {
      cpuMicrosPerTask: (cpu.user + cpu.system) / n,
      tasks: n,
      scheduledMs: scheduled - start,
      totalMs: end - start,
      tasksPerSecond: n / ((end - start) / 1_000)
    } satisfies Throughput
  })

// Not when bundled into another entry (the probes): then this module shares the entry's URL.
const isMain = process.argv[1] !== undefined && import.meta.url === Url.pathToFileURL(process.argv[1]).href &&
  /taskrunner\.[cm]?[jt]s$/.test(process.argv[1])

class StepCounter extends Supervisor.AbstractSupervisor<number> {
  steps = 0
  get value() {
    return Effect.sync(() => this.steps)
  }
  override onEffect<A, E>(_fiber: Fiber.RuntimeFiber<A, E>, _effect: Effect.Effect<unknown, unknown, unknown>) {
    this.steps++
  }
}

if (isMain) {
  const n = Number(process.argv[2] ?? 20_000)
  const harness: Harness = process.argv[3] === "fork" ? "fork" : "loops"
  const counter = process.argv[4] === "steps" ? new StepCounter() : undefined
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-tasks-"))
  const program = throughput(n, harness).pipe(Effect.provide(sqliteRunner(dir)), Effect.scoped)
  Effect.runPromise(
    counter === undefined ? program : program.pipe(
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
  ).then((r) =>
    console.log(
      `tasks: ${r.tasks}; scheduled in ${r.scheduledMs.toFixed(0)} ms; all run in ${r.totalMs.toFixed(0)} ms; ${
        Math.round(r.tasksPerSecond)
      } tasks/s; ${r.cpuMicrosPerTask.toFixed(1)} µs CPU per task (${harness})${
        counter === undefined ? "" : `; ${(counter.steps / n).toFixed(1)} Effect steps per task`
      }`
    )
  ).finally(() => Fs.rmSync(dir, { recursive: true, force: true }))
}
