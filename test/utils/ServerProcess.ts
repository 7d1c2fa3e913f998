/**
 * Runs the real server (`src/main.ts`, as `npm start` does) as a child process on a free loopback port, for
 * process-level tests (restart, kill -9, two owners). The process is killed when the scope closes.
 */
import { Data, Effect, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import * as Path from "node:path"

export class ServerFailed
  extends Data.TaggedError("ServerFailed")<{ readonly message: string; readonly output: string }>
{}

export interface RunningServer {
  readonly url: string
  readonly port: number
  readonly process: ChildProcess
  /** Everything the process printed so far. */
  readonly output: () => string
  /** Resolves with the exit code when the process ends. */
  readonly exited: Effect.Effect<number | null>
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<number | null>
}

const root = Path.resolve(import.meta.dirname, "../..")

export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(address.port)))
  })
})

/**
 * Spawns the server; does not wait for readiness. `entry` is the entry file relative to the repository root
 * (default `src/main.ts`), for examples with their own composition.
 */
export const spawnServer = (env: Record<string, string>, port?: number, entry = "src/main.ts") =>
  Effect.gen(function*() {
    const p = port ?? (yield* freePort)
    const child = spawn(process.execPath, ["--import", "tsx", Path.join(root, entry)], {
      cwd: root,
      env: {
        ...process.env,
        PORT: String(p),
        HOST: "127.0.0.1",
        LOG_LEVEL: "info",
        // state in memory unless the test picks a state dir: parallel tests must not share ./.agent-host
        ...(env.AGENT_HOST_STATE_DIR === undefined && env.AGENT_HOST_STATE === undefined ?
          { AGENT_HOST_STATE: "memory" } :
          {}),
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    return running(child, p)
  })

/** A spawned server child (stdout and stderr piped) as a `RunningServer` on `port`: output collected, kill, exit. */
export const running = (child: ChildProcess, port: number): RunningServer => {
  let out = ""
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()))
  const exitPromise = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const exited = Effect.promise(() => exitPromise)
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    process: child,
    output: () => out,
    exited,
    kill: (signal = "SIGKILL") =>
      Effect.suspend(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal)
        return exited
      })
  }
}

/** Waits (at most a second) for an exited child's pipes to close: its last output may still be in them. */
const closed = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.stdout?.closed !== false && child.stderr?.closed !== false) return resume(Effect.void)
    const done = () => {
      clearTimeout(timer)
      child.off("close", done)
      resume(Effect.void)
    }
    const timer = setTimeout(done, 1000)
    child.once("close", done)
    return Effect.sync(() => {
      clearTimeout(timer)
      child.off("close", done)
    })
  })

/** Waits until `GET /readiness` answers, or fails with the process output if it exits first. */
export const awaitReady = (server: RunningServer, timeoutMs = 90_000) =>
  Effect.gen(function*() {
    const poll = Effect.tryPromise(() => fetch(`${server.url}/readiness`)).pipe(
      Effect.flatMap((
        r
      ) => (r.ok ? Effect.void : Effect.fail(new ServerFailed({ message: `status ${r.status}`, output: "" })))),
      Effect.catchAll((e) =>
        server.process.exitCode !== null ?
          // The output is read once the pipes have closed, not when the failure is built.
          Effect.zipRight(
            closed(server.process),
            Effect.suspend(() =>
              Effect.fail(
                new ServerFailed({
                  // The output's end in the message too: a test runner's summary shows the message only.
                  message: `server exited with ${server.process.exitCode}: ${server.output().slice(-1_500)}`,
                  output: server.output()
                })
              )
            )
          ) :
          Effect.fail(e)
      )
    )
    yield* poll.pipe(
      Effect.retry({
        schedule: Schedule.spaced("100 millis"),
        while: (e) => !(e instanceof ServerFailed && e.message.startsWith("server exited")),
        times: Math.ceil(timeoutMs / 100)
      }),
      Effect.mapError((e) =>
        e instanceof ServerFailed ? e : new ServerFailed({ message: String(e), output: server.output() })
      )
    )
    return server
  })

/** Starts the server, waits for readiness, and kills it (SIGKILL) when the scope closes. */
export const start = (env: Record<string, string>, port?: number, entry?: string) =>
  Effect.acquireRelease(
    Effect.flatMap(spawnServer(env, port, entry), (s) => awaitReady(s)),
    (server) => server.kill("SIGKILL")
  )
