/**
 * Child processes for the bench: servers pinned to one core, load generators to another, every one bounded in
 * time and killed on exit.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

export const root = Path.resolve(import.meta.dirname, "../..")

const hasTaskset = (() => {
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

const cpus = Os.availableParallelism()

/** Pinning: servers on cpu 0, load generators on cpu 1, when taskset exists and there are two cores. */
export const pinning = hasTaskset && cpus >= 2 ?
  { server: "0", load: "1", description: "server on cpu 0, load generator on cpu 1 (taskset)" } :
  { server: undefined, load: undefined, description: hasTaskset ? "not pinned (one cpu)" : "not pinned (no taskset)" }

/** The command line, under `taskset -c <cpu>` when pinning is available. */
export const pinned = (cpu: string | undefined, command: string, args: ReadonlyArray<string>) =>
  cpu === undefined ? { command, args: [...args] } : { command: "taskset", args: ["-c", cpu, command, ...args] }

const live = new Set<ChildProcess>()
const killAll = () => {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as Net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export const tempDir = (prefix: string) => Fs.mkdtempSync(Path.join(Os.tmpdir(), `${prefix}-`))

export interface Server {
  readonly name: string
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  /** When the process was spawned (performance.now()). */
  readonly spawnedAt: number
  readonly output: () => string
  readonly stop: () => Promise<void>
}

export interface ServerOptions {
  readonly name: string
  /** node arguments (script and flags). */
  readonly nodeArgs: ReadonlyArray<string>
  readonly env?: Record<string, string>
  readonly port?: number
  readonly cwd?: string
  /** A file that receives stdout/stderr instead of a pipe (the host logs every request at info). */
  readonly logFile?: string
}

/** Spawns a node server pinned to the server core; does not wait for it. */
export const spawnServer = async (options: ServerOptions): Promise<Server> => {
  const port = options.port ?? (await freePort())
  const { args, command } = pinned(pinning.server, process.execPath, options.nodeArgs)
  let logFd: number | undefined
  if (options.logFile !== undefined) logFd = Fs.openSync(options.logFile, "a")
  const spawnedAt = performance.now()
  const child = spawn(command, args, {
    cwd: options.cwd ?? root,
    env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", ...options.env },
    stdio: logFd === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", logFd, logFd]
  })
  if (logFd !== undefined) Fs.closeSync(logFd)
  live.add(child)
  let out = ""
  const append = (d: Buffer) => {
    if (out.length < 64_000) out += d.toString()
  }
  child.stdout?.on("data", append)
  child.stderr?.on("data", append)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  void exited.then(() => live.delete(child))
  return {
    name: options.name,
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    spawnedAt,
    output: () =>
      options.logFile === undefined ? out : Fs.existsSync(options.logFile) ?
        Fs.readFileSync(options.logFile, "utf8").slice(-8_000) :
        "",
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM")
        const timer = setTimeout(() => child.kill("SIGKILL"), 3_000)
        await exited
        clearTimeout(timer)
      }
    }
  }
}

/** Polls `GET /readiness` until 200; resolves with the time it first answered (performance.now()). */
export const awaitReady = async (server: Server, timeoutMs = 30_000, everyMs = 20): Promise<number> => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`${server.name} exited before it was ready:\n${server.output()}`)
    }
    try {
      const response = await fetch(`${server.url}/readiness`, { signal: AbortSignal.timeout(1_000) })
      await response.arrayBuffer()
      if (response.status === 200) return performance.now()
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) {
      await server.stop()
      throw new Error(`${server.name} was not ready within ${timeoutMs} ms:\n${server.output()}`)
    }
    await sleep(everyMs)
  }
}

export interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion, killed after `timeoutMs`. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  timeoutMs: number,
  env?: Record<string, string>
): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    live.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      live.delete(child)
      reject(error)
    })
    child.once("exit", (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, stdout, stderr })
    })
  })

/** The last line of a child's stdout that parses as a JSON object. */
export const lastJsonLine = <A>(stdout: string): A | undefined => {
  const lines = stdout.trim().split("\n").reverse()
  for (const line of lines) {
    if (!line.startsWith("{")) continue
    try {
      return JSON.parse(line) as A
    } catch {
      continue
    }
  }
  return undefined
}

export const which = (command: string): boolean => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

export const tsxArgs = (script: string, ...rest: ReadonlyArray<string>) => [
  "--import",
  "tsx",
  Path.join(root, script),
  ...rest
]

/** CPU seconds (user + system) a process has used so far, from /proc; undefined off Linux. */
export const cpuSeconds = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command (which may contain spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

/** CPU seconds of a private Postgres in `dir` (test/utils/PostgresServer.ts): the postmaster and its backends. */
export const postgresCpuSeconds = (dir: string): number => {
  const postmaster = Number(Fs.readFileSync(Path.join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0])
  let total = cpuSeconds(postmaster) ?? NaN
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = Fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      // ppid is the second field after the command.
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === postmaster) {
        total += cpuSeconds(Number(entry)) ?? 0
      }
    } catch {
      // The process ended meanwhile.
    }
  }
  return total
}

/** Creates the database `name` on the Postgres at `base` (a `postgres://` URL), with its `createdb` in `binDir`. */
export const createDatabase = (binDir: string, base: string, name: string) => {
  const server = new URL(base)
  return run(
    Path.join(binDir, "createdb"),
    ["-h", server.hostname, "-p", server.port, "-U", "postgres", name],
    30_000
  )
}
