/**
 * Summarises a `.cpuprofile` (from `node --cpu-prof`): the top frames by self time, and self time by package.
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [top=25] [skipMs=0]
 * `skipMs` drops the first milliseconds of samples (module loading at startup); idle time is left out.
 */
import * as Fs from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, topArg = "25", skipArg = "0"] = process.argv.slice(2)
if (file === undefined) throw new Error("usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]")
const profile = JSON.parse(Fs.readFileSync(file, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
let elapsed = 0
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0
  elapsed += delta
  if (elapsed < Number(skipArg) * 1_000 || byId.get(id)?.callFrame.functionName === "(idle)") return
  self.set(id, (self.get(id) ?? 0) + delta)
})
const total = [...self.values()].reduce((a, b) => a + b, 0)

const where = (url: string) => {
  const nm = url.lastIndexOf("node_modules/")
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split("/")
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  if (url.includes("/src/")) return "src (host)"
  if (url.startsWith("node:")) return "node internals"
  return url === "" ? "(native/vm)" : "other"
}

const frames = new Map<string, number>()
const packages = new Map<string, number>()
for (const [id, us] of self) {
  const node = byId.get(id)!
  const { functionName, lineNumber, url } = node.callFrame
  const short = url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/src\//, "src/")
  const key = `${functionName || "(anonymous)"}  ${short}:${lineNumber + 1}`
  frames.set(key, (frames.get(key) ?? 0) + us)
  const pkg = where(url)
  packages.set(pkg, (packages.get(pkg) ?? 0) + us)
}
const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`
console.log(`busy ${(total / 1000).toFixed(0)} ms sampled\n\nself time by package:`)
for (const [pkg, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(us)}  ${pkg}`)
console.log(`\ntop ${topArg} frames by self time:`)
for (const [key, us] of [...frames].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) {
  console.log(`  ${pct(us)}  ${key}`)
}
