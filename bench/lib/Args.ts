/**
 * Command-line flags of `npm run bench`.
 */
export interface BenchArgs {
  readonly rounds: number
  /** Seconds per load run. */
  readonly duration: number
  readonly connections: number
  /** Scenario names to run; empty means all. */
  readonly only: ReadonlyArray<string>
  readonly smoke: boolean
  /** Where latest.json / latest.md go (a smoke run without --out: a fresh temporary directory). */
  readonly out: string
  /** LOG_LEVEL of the host under test (the `npm start` default is info). */
  readonly logLevel: string
  /** Session counts for the memory scenario. */
  readonly sessionKeys: ReadonlyArray<number>
  /** Load generator: auto (wrk if installed), wrk or autocannon. */
  readonly loader: "auto" | "wrk" | "autocannon"
}

export const usage = `usage: npm run bench -- [flags]
  --rounds N          rounds per scenario (default 3; min/median/max are over rounds)
  --duration S        seconds per load run (default 10)
  --connections C     concurrent connections under load (default 50)
  --only a,b,...      run only these scenarios (baselines they need are added)
  --smoke             1 round, 1 s runs, 10 connections, small N (what CI runs); its results go to a
                      temporary directory unless --out is given, never over the committed ones
  --out DIR           where latest.json and latest.md are written (default bench/results; with --smoke,
                      a fresh temporary directory)
  --log-level L       LOG_LEVEL of the host under test (default info, as npm start)
  --session-keys a,b  session counts for session-memory (default 10000,100000)
  --loader L          auto | wrk | autocannon (default auto: wrk when installed)
  --help`

const positiveInt = (flag: string, value: string | undefined): number => {
  const n = Number(value)
  if (value === undefined || !Number.isInteger(n) || n <= 0) throw new Error(`${flag} needs a positive integer`)
  return n
}

/**
 * The flags in `argv`. Results go to `--out`, else `defaultOut`, except for a smoke run without `--out`, whose
 * figures mean nothing: those go to `smokeOut()` (a temporary directory), so the committed results stay as they are.
 */
export const parse = (
  argv: ReadonlyArray<string>,
  defaultOut: string,
  smokeOut: () => string
): BenchArgs | "help" => {
  const smoke = argv.includes("--smoke")
  let rounds = smoke ? 1 : 3
  let duration = smoke ? 1 : 10
  let connections = smoke ? 10 : 50
  let only: ReadonlyArray<string> = []
  let out: string | undefined
  let logLevel = "info"
  let sessionKeys: ReadonlyArray<number> = smoke ? [2_000] : [10_000, 100_000]
  let loader: BenchArgs["loader"] = "auto"
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = argv[i + 1]
    switch (flag) {
      case "--smoke":
        continue
      case "--help":
      case "-h":
        return "help"
      case "--rounds":
        rounds = positiveInt(flag, value)
        break
      case "--duration":
        duration = positiveInt(flag, value)
        break
      case "--connections":
        connections = positiveInt(flag, value)
        break
      case "--only":
        if (value === undefined) throw new Error("--only needs a comma-separated list of scenario names")
        only = value.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
        break
      case "--out":
        if (value === undefined) throw new Error("--out needs a directory")
        out = value
        break
      case "--log-level":
        if (value === undefined) throw new Error("--log-level needs a level")
        logLevel = value
        break
      case "--session-keys":
        if (value === undefined) throw new Error("--session-keys needs a comma-separated list of counts")
        sessionKeys = value.split(",").map((s) => positiveInt(flag, s.trim()))
        break
      case "--loader":
        if (value !== "auto" && value !== "wrk" && value !== "autocannon") {
          throw new Error("--loader must be auto, wrk or autocannon")
        }
        loader = value
        break
      default:
        throw new Error(`unknown flag ${flag}\n${usage}`)
    }
    i++
  }
  out ??= smoke ? smokeOut() : defaultOut
  return { rounds, duration, connections, only, smoke, out, logLevel, sessionKeys, loader }
}
