/**
 * WAL checkpoints off the event loop.
 *
 * SQLite's automatic checkpoint runs inside the commit that takes the WAL past `wal_autocheckpoint` pages: it
 * copies the WAL into the database and fsyncs, synchronously, on the event loop, while every request waits (tens
 * of ms under load: docs/PERFORMANCE.md). Here a worker thread with its own connection to the same file does it:
 * every `every` it runs `PRAGMA wal_checkpoint(PASSIVE)`, which never waits for the other connections nor blocks
 * them, and once the WAL holds `restartFrames` frames, `wal_checkpoint(RESTART)`, which copies what is left
 * (little, just after the passive one) and makes the next write start the WAL from the top, so the WAL file
 * stays small. While RESTART runs, writers get SQLITE_BUSY: the StateWriter retries on a timer (the event loop
 * goes on); the @effect/sql connection waits its busy timeout.
 *
 * The main connections keep a raised `wal_autocheckpoint` (`autocheckpointPages`) as the bound: if the worker
 * falls behind, the WAL still cannot grow past it. If the worker dies, the failure is logged and `onCrash` runs
 * (StateDb lowers the bound back to SQLite's default), so the host goes on checkpointing as it did without a
 * worker.
 *
 * The worker's code is a string (`eval`), so the one-file bundle (dist/main.cjs) needs no second file; it loads
 * better-sqlite3 by the path this module resolves.
 */
import type { Scope } from "effect"
import { Cause, Context, Duration, Effect } from "effect"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"

/** The main connections' `wal_autocheckpoint` while the worker runs: ~16 MB of 4 KB pages. */
export const autocheckpointPages = 4_000

/**
 * The main connections' `journal_size_limit` while the worker runs: the WAL file is cut back to this after it
 * restarts, so a burst that grew it does not keep it large.
 */
export const walSizeLimitBytes = autocheckpointPages * 4096

/** SQLite's default `wal_autocheckpoint`: what the main connections go back to if the worker dies. */
export const defaultAutocheckpointPages = 1_000

/** How often the worker checkpoints. */
export const defaultEvery: Duration.Duration = Duration.millis(100)

/** The WAL size (frames) at which the worker restarts it: SQLite's own checkpoint threshold. */
export const restartFrames = defaultAutocheckpointPages

/** How long a RESTART may wait for a writer to finish or a reader to move on, in the worker. */
const restartWait = Duration.millis(100)

/** How long a RESTART past the bound may wait for the writers (which wait for it meanwhile). */
const boundWait = Duration.seconds(5)

/** The worker starts this long after the database opens, off the host's startup path. */
export const defaultStartAfter: Duration.Duration = Duration.seconds(1)

/** How long closing waits for the worker to close its connection before terminating it. */
const stopTimeout = Duration.seconds(5)

export interface Stats {
  /** True once the worker has opened its connection. */
  readonly running: boolean
  /** Checkpoints that copied something (or restarted the WAL). */
  readonly checkpoints: number
  /** Times the WAL was restarted from the top. */
  readonly restarts: number
  /** True once the worker has stopped or died. */
  readonly stopped: boolean
}

export const notRunning: Stats = { running: false, checkpoints: 0, restarts: 0, stopped: true }

export interface CheckpointerShape {
  readonly stats: Effect.Effect<Stats>
}

export class Checkpointer extends Context.Tag("effect-agent-host/Checkpointer")<Checkpointer, CheckpointerShape>() {}

export interface Options {
  /** The database file (in WAL mode already). */
  readonly filename: string
  readonly every?: Duration.DurationInput
  /** How long after `make` the worker starts (default `defaultStartAfter`). */
  readonly startAfter?: Duration.DurationInput
  /** Runs once if the worker dies before the scope closes. */
  readonly onCrash?: Effect.Effect<void>
  /** The worker's code (tests give others); default `workerSource`. */
  readonly source?: string
}

export interface WorkerData {
  readonly driver: string
  readonly filename: string
  readonly everyMillis: number
  readonly restartFrames: number
  readonly restartWaitMillis: number
  readonly boundFrames: number
  readonly boundWaitMillis: number
}

/** What the worker posts: "ready" once its connection is open, then one message per checkpoint that copied. */
export type Message = "ready" | { readonly restarted: boolean }

/**
 * CommonJS, run by `new Worker(source, { eval: true, workerData })`. SQLITE_BUSY (another connection is
 * checkpointing) skips a round; any other error ends the worker. Any message from the main thread stops it.
 */
export const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const Database = require(workerData.driver)
const db = new Database(workerData.filename, { timeout: workerData.restartWaitMillis })
db.pragma("synchronous = NORMAL")
const passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)")
const restart = db.prepare("PRAGMA wal_checkpoint(RESTART)")
let timer
let last = { log: 0, checkpointed: 0 }
const tick = () => {
  try {
    // log: frames in the WAL; checkpointed: of those, copied into the database; busy: 1 if it could not finish
    let row = passive.get()
    const fresh = row.log !== last.log || row.checkpointed !== last.checkpointed
    let restarted = false
    if (fresh && row.log >= workerData.restartFrames) {
      // Past the bound the WAL grew while this worker was copying (the main connections' own checkpoint gives
      // way to it): wait for the writers then, as SQLite's checkpoint inside a commit would have made them wait.
      const wait = row.log >= workerData.boundFrames ? workerData.boundWaitMillis : workerData.restartWaitMillis
      if (wait !== workerData.restartWaitMillis) db.pragma("busy_timeout = " + wait)
      row = restart.get()
      if (wait !== workerData.restartWaitMillis) db.pragma("busy_timeout = " + workerData.restartWaitMillis)
      restarted = row.busy === 0
    }
    last = row
    if (fresh && row.checkpointed > 0) parentPort.postMessage({ restarted })
  } catch (error) {
    if (!(typeof error.code === "string" && error.code.startsWith("SQLITE_BUSY"))) throw error
  }
  timer = setTimeout(tick, workerData.everyMillis)
}
parentPort.on("message", () => {
  clearTimeout(timer)
  db.close()
  parentPort.close()
})
parentPort.postMessage("ready")
tick()
`

const driverPath = (): string => createRequire(import.meta.url).resolve("better-sqlite3")

/**
 * Starts the worker after `startAfter` (so it does not compete with startup), for the scope; closing the scope
 * stops it and waits for it to close its connection.
 */
export const make = (options: Options): Effect.Effect<CheckpointerShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const data: WorkerData = {
      driver: driverPath(),
      filename: options.filename,
      everyMillis: Math.max(1, Duration.toMillis(options.every ?? defaultEvery)),
      restartFrames,
      restartWaitMillis: Duration.toMillis(restartWait),
      boundFrames: autocheckpointPages,
      boundWaitMillis: Duration.toMillis(boundWait)
    }
    const stats = { running: false, checkpoints: 0, restarts: 0, stopped: false }

    // Set by the worker's "error" event (an uncaught exception in it), which precedes its "exit".
    let failure: unknown = undefined
    let ready: (() => void) | undefined
    let exited: ((code: number) => void) | undefined

    // `new Worker` can throw (no memory for a thread): then, as when the worker dies, SQLite checkpoints.
    const start = Effect.try(() => {
      const worker = new Worker(options.source ?? workerSource, { eval: true, workerData: data })
      // The worker never keeps the process alive: shutting down is the scope's business.
      worker.unref()
      worker.on("message", (message: Message) => {
        if (message === "ready") {
          stats.running = true
          ready?.()
          return
        }
        stats.checkpoints++
        if (message.restarted) stats.restarts++
      })
      worker.on("error", (error) => {
        failure = error
      })
      worker.once("exit", (code) => {
        stats.stopped = true
        exited?.(code)
      })
      return worker
    })
    const stop = (worker: Worker) =>
      Effect.async<void>((resume) => {
        if (stats.stopped) return resume(Effect.void)
        exited = () => resume(Effect.void)
        worker.postMessage("stop")
      }).pipe(
        Effect.timeout(stopTimeout),
        Effect.catchTag("TimeoutException", () => Effect.asVoid(Effect.promise(() => worker.terminate())))
      )
    /** Completes once the worker has opened its connection (true), or has exited first (false). */
    const opened = Effect.async<boolean>((resume) => {
      if (stats.running || stats.stopped) return resume(Effect.succeed(stats.running))
      ready = () => resume(Effect.succeed(true))
      exited = () => resume(Effect.succeed(false))
      return Effect.sync(() => {
        ready = undefined
        exited = undefined
      })
    })
    /** Completes when the worker exits (it only exits when told to, so: when it dies), with its exit code. */
    const died = Effect.async<number>((resume) => {
      if (stats.stopped) return resume(Effect.succeed(-1))
      exited = (code) => resume(Effect.succeed(code))
      return Effect.sync(() => {
        exited = undefined
      })
    })
    const fallBack = (code: number) =>
      Effect.zipRight(
        Effect.logError(
          "the WAL checkpoint worker died; SQLite checkpoints inside commits again",
          Cause.die(failure ?? new Error(`the checkpoint worker exited with code ${code}`))
        ).pipe(Effect.annotateLogs({ database: options.filename })),
        options.onCrash ?? Effect.void
      )
    const run = Effect.gen(function*() {
      const started = yield* Effect.either(Effect.acquireRelease(start, stop))
      if (started._tag === "Left") {
        stats.stopped = true
        failure = started.left.error
        return yield* fallBack(-1)
      }
      if (yield* opened) {
        yield* Effect.logInfo("WAL checkpoints run in a worker thread").pipe(
          Effect.annotateLogs({ database: options.filename })
        )
      }
      yield* fallBack(yield* died)
    }).pipe(Effect.scoped)
    const startAfter = Duration.decode(options.startAfter ?? defaultStartAfter)
    yield* Effect.forkScoped(Duration.isZero(startAfter) ? run : Effect.zipRight(Effect.sleep(startAfter), run))
    return Checkpointer.of({
      stats: Effect.sync((): Stats => ({ ...stats }))
    })
  }).pipe(Effect.withSpan("Checkpointer.make"))
