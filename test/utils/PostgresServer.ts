/**
 * Starting and stopping the tests' private PostgreSQL (used by test/utils/Postgres.ts and test/globalSetup.ts; no
 * vitest import, so the global setup can load it).
 *
 * The server lives in a temporary directory owned by the `postgres` user (initdb refuses to run as root; as root
 * the binaries run through `su postgres`), listens on a free port on 127.0.0.1 only, trusts local connections,
 * and is started with bounded timeouts.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"

/** How long starting the server (initdb + start) may take, and how long the other files wait for it. */
export const startTimeoutMs = 90_000

/** The Postgres binaries: the newest /usr/lib/postgresql/<version>/bin (Debian's layout). */
export const binDir = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!Fs.existsSync(root)) return undefined
  const versions = Fs.readdirSync(root).filter((v) => Fs.existsSync(Path.join(root, v, "bin", "initdb")))
  versions.sort((a, b) => Number(b) - Number(a))
  return versions[0] === undefined ? undefined : Path.join(root, versions[0], "bin")
}

const isRoot = () => process.getuid?.() === 0

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs a Postgres binary (as `postgres` when we are root), bounded by `timeout`. */
const runPg = (bin: string, args: ReadonlyArray<string>, timeout: number) => {
  const command = [Path.join(bin, args[0]!), ...args.slice(1)].map(quote).join(" ")
  const [file, argv] = isRoot() ? ["su", ["postgres", "-s", "/bin/sh", "-c", command]] : ["/bin/sh", ["-c", command]]
  return ChildProcess.execFileSync(file, argv as Array<string>, { timeout, stdio: "pipe", encoding: "utf8" })
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject())
    })
  })

/** Paths inside the run's directory. */
export const paths = (dir: string) => ({
  data: Path.join(dir, "data"),
  lock: Path.join(dir, "starting"),
  url: Path.join(dir, "url"),
  failed: Path.join(dir, "failed")
})

export const start = async (dir: string): Promise<string> => {
  const bin = binDir()
  if (bin === undefined) {
    throw new Error(
      "PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb): `apt-get install -y postgresql` " +
        "(.ci/run does)"
    )
  }
  const { data } = paths(dir)
  Fs.mkdirSync(data, { mode: 0o700 })
  if (isRoot()) {
    const uid = Number(ChildProcess.execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(ChildProcess.execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    Fs.chownSync(dir, uid, gid)
    Fs.chownSync(data, uid, gid)
  }
  runPg(bin, ["initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], startTimeoutMs)
  const port = await freePort()
  // fsync off: a test server need not survive an OS crash, and it spares the shared disk.
  const options = `-p ${port} -k ${data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`
  runPg(
    bin,
    ["pg_ctl", "-D", data, "-o", options, "-l", Path.join(data, "server.log"), "-w", "-t", "60", "start"],
    startTimeoutMs
  )
  return `postgres://postgres@127.0.0.1:${port}`
}

/** Stops the server in `dir` if one was started (immediate: nothing in it is worth a clean shutdown). */
export const stop = (dir: string): void => {
  const bin = binDir()
  const { data } = paths(dir)
  if (bin !== undefined && Fs.existsSync(Path.join(data, "postmaster.pid"))) {
    try {
      runPg(bin, ["pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "20", "stop"], 30_000)
    } catch (cause) {
      // The teardown has no logger; the temp dir goes anyway, and the server dies with its data dir.
      process.stderr.write(`could not stop the test Postgres: ${String(cause)}\n`)
    }
  }
  Fs.rmSync(dir, { recursive: true, force: true })
}
