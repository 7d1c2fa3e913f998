/**
 * `npm run bench`: the host's speed and memory as ratios to raw node:http measured in the same run.
 * See docs/PERFORMANCE.md. Flags: --rounds N --duration S --connections C --only a,b --smoke --out DIR.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parse, usage } from "./lib/Args.js"
import { chooseLoader } from "./lib/Load.js"
import type { Server } from "./lib/Processes.js"
import { awaitReady, pinning, root, spawnServer } from "./lib/Processes.js"
import type { Report } from "./lib/Report.js"
import { defaultTargets, evaluate, Figures, render, write } from "./lib/Report.js"
import type { Context } from "./lib/Scenarios.js"
import { scenarios } from "./lib/Scenarios.js"

const main = async () => {
  const parsed = parse(
    process.argv.slice(2),
    Path.join(root, "bench/results"),
    () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "bench-smoke-"))
  )
  if (parsed === "help") {
    console.log(usage)
    console.log(`\nscenarios:\n${scenarios.map((s) => `  ${s.name.padEnd(18)} ${s.measures}`).join("\n")}`)
    return
  }
  const args = parsed
  const unknown = args.only.filter((name) => !scenarios.some((s) => s.name === name))
  if (unknown.length > 0) throw new Error(`unknown scenario(s): ${unknown.join(", ")}; see --help`)
  const wanted = new Set(args.only.length === 0 ? scenarios.map((s) => s.name) : args.only)
  for (const s of scenarios) if (wanted.has(s.name)) { for (const need of s.needs) wanted.add(need) }
  const selected = scenarios.filter((s) => wanted.has(s.name))
  const loader = chooseLoader(args.loader)

  let raw: Promise<Server> | undefined
  const ctx: Context = {
    args,
    loader,
    warmupSeconds: args.smoke ? 1 : Math.max(1, Math.round(args.duration * 0.2)),
    log: (line) => console.log(line),
    raw: () => {
      raw ??= spawnServer({ name: "raw", nodeArgs: [Path.join(root, "bench/servers/raw.mjs")] }).then(
        async (server) => {
          await awaitReady(server)
          return server
        }
      )
      return raw
    }
  }

  const machine = {
    cpus: Os.availableParallelism(),
    cpu: Os.cpus()[0]?.model ?? "unknown",
    node: process.version,
    loader,
    pinning: pinning.description,
    shared: "yes: other work may run on this machine; compare ratios, not absolute figures"
  }
  console.log(
    `bench: ${selected.map((s) => s.name).join(", ")}; ${args.rounds} round(s) × ${args.duration} s, ` +
      `${args.connections} connections, ${loader}, ${pinning.description}`
  )

  const figures = new Figures()
  const skipped = new Map<string, string>()
  const notes: Array<{ scenario: string; note: string }> = []
  for (let round = 0; round < args.rounds; round++) {
    for (const scenario of selected) {
      if (skipped.has(scenario.name)) continue
      const t0 = performance.now()
      try {
        const outcome = await scenario.round(ctx, round)
        if (outcome._tag === "Skip") {
          skipped.set(scenario.name, outcome.reason)
          console.log(`  [${round + 1}/${args.rounds}] ${scenario.name}: skipped: ${outcome.reason}`)
          continue
        }
        for (const reading of outcome.readings) figures.add(scenario.name, reading)
        for (const note of outcome.notes ?? []) {
          notes.push({ scenario: scenario.name, note: `round ${round + 1}: ${note}` })
        }
        const shown = outcome.readings.slice(0, 3).map((r) => `${r.metric} ${r.value.toFixed(r.unit === "ms" ? 3 : 0)}`)
        console.log(
          `  [${round + 1}/${args.rounds}] ${scenario.name}: ${shown.join(", ")} (${
            ((performance.now() - t0) / 1000).toFixed(1)
          } s)`
        )
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        notes.push({ scenario: scenario.name, note: `round ${round + 1} failed: ${message.slice(0, 500)}` })
        console.log(`  [${round + 1}/${args.rounds}] ${scenario.name}: FAILED: ${message.slice(0, 500)}`)
      }
    }
  }
  if (raw !== undefined) await (await raw).stop()

  const summaries = figures.summaries()
  const report: Report = {
    generatedAt: new Date().toISOString(),
    machine,
    args,
    figures: summaries,
    targets: evaluate(defaultTargets(args.sessionKeys, args.connections), summaries),
    skipped: [...skipped].map(([scenario, reason]) => ({ scenario, reason })),
    notes
  }
  console.log("")
  console.log(render(report, false))
  const files = write(args.out, report)
  const shown = (file: string) => {
    const relative = Path.relative(process.cwd(), file)
    return relative.startsWith("..") ? file : relative
  }
  console.log(`\nwrote ${shown(files.json)} and ${shown(files.md)}`)
}

main().then(() => process.exit(0), (error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
