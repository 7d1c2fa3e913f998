/**
 * Keeps the benchmark suite working: runs `bench/run.ts --smoke` on five scenarios as a child process and
 * checks that it printed the ratio table and wrote both results files, to a temporary directory: a smoke run
 * never touches the committed `bench/results/latest.*`. It times nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parse } from "../bench/lib/Args.js"

const root = Path.resolve(import.meta.dirname, "..")

const runBench = (extra: ReadonlyArray<string>) =>
  Effect.async<{ code: number | null; stdout: string; stderr: string }>((resume) => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        Path.join(root, "bench/run.ts"),
        "--smoke",
        "--only",
        "raw-json,invocations-json,floor-json,floor-effect-json,session-memory",
        ...extra
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 55_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

describe("bench --smoke", () => {
  it("a smoke run writes to --out, else to a temporary directory; a full run to bench/results", () => {
    const temporary = () => "/tmp/bench-smoke-x"
    const smoke = parse(["--smoke"], "bench/results", temporary)
    assert.strictEqual(smoke !== "help" && smoke.out, "/tmp/bench-smoke-x")
    const chosen = parse(["--smoke", "--out", "elsewhere"], "bench/results", temporary)
    assert.strictEqual(chosen !== "help" && chosen.out, "elsewhere")
    const full = parse(["--rounds", "2"], "bench/results", temporary)
    assert.strictEqual(full !== "help" && full.out, "bench/results")
  })

  it.live(
    "prints a ratio table and writes latest.json and latest.md, leaving the committed results alone",
    () =>
      Effect.gen(function*() {
        const committed = ["latest.json", "latest.md"].map((name) => Path.join(root, "bench/results", name))
        const snapshot = () =>
          committed.map((file) => {
            const stat = Fs.statSync(file)
            return { file, content: Fs.readFileSync(file, "utf8"), mtimeMs: stat.mtimeMs, ino: stat.ino }
          })
        const before = snapshot()
        // As the README runs it: `npm run bench -- --smoke`, no --out.
        const result = yield* runBench([])
        assert.strictEqual(result.code, 0, `bench exited with ${result.code}:\n${result.stdout}\n${result.stderr}`)
        assert.deepStrictEqual(snapshot(), before, "a smoke run rewrote the committed bench/results")
        const wrote = /^wrote (\S+)latest\.json and /m.exec(result.stdout)
        assert.isNotNull(wrote, result.stdout)
        const out = wrote![1]!
        assert.isTrue(out.startsWith(Os.tmpdir()), `smoke results went to ${out}`)
        assert.include(result.stdout, "ratio to raw")
        assert.match(result.stdout, /invocations-json\s+req\/s\s.*\d\.\d\dx/)
        assert.match(result.stdout, /session-memory\s+live heap\/key @2k/)
        // The references (bench/servers/floor.cjs, plain and in Effect) answered and were measured against raw.
        assert.match(result.stdout, /floor-json\s+req\/s\s.*\d\.\d\dx/)
        assert.match(result.stdout, /floor-effect-json\s+req\/s\s.*\d\.\d\dx/)
        const report = JSON.parse(Fs.readFileSync(Path.join(out, "latest.json"), "utf8"))
        const figure = report.figures.find((f: { key: string }) => f.key === "invocations-json/req/s")
        assert.isDefined(figure)
        assert.isAbove(figure.ratio, 0)
        assert.strictEqual(figure.baseline, "raw-json/req/s")
        assert.isTrue(report.targets.some((t: { status: string }) => t.status === "met" || t.status === "missed"))
        assert.include(Fs.readFileSync(Path.join(out, "latest.md"), "utf8"), "| scenario | figure |")
        Fs.rmSync(out, { recursive: true, force: true })
      }),
    { timeout: 60_000 }
  )
})
