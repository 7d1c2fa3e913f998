/**
 * Every module the README calls importable on its own resolves through the package name, the way an installed
 * copy is used: Node's own resolution (the `exports` map of package.json) from a temporary project whose
 * `node_modules/effect-agent-host` links to this repository, run with `tsx` as the README says.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Util from "node:util"
import * as Index from "../src/index.js"
import * as TempDir from "./utils/TempDir.js"

const root = Path.resolve(import.meta.dirname, "..")
const subsystems = new Set(["core", "delivery", "auth", "state", "workflow"])

/**
 * The subpath of each module the package index re-exports: `./channels/Responses/index.js` is
 * `channels/Responses`, `./channels/WebChat/WebChat.js` is `channels/WebChat`.
 */
const documentedSubpaths = (): ReadonlyArray<readonly [name: string, subpath: string]> => {
  const source = Fs.readFileSync(Path.join(root, "src/index.ts"), "utf8")
  return [...source.matchAll(/^export \* as (\w+) from "\.\/(.+)\.js"$/gm)].map(([, name, path]) => {
    // Core subsystems (core/, delivery/, auth/, state/, workflow/) are internal layout: the public subpath is the
    // module's name (`effect-agent-host/AgentHost`); channels and the domain keep their folder.
    const parts = path!.split("/").filter((part, i, all) => !(i === 0 && all.length === 2 && subsystems.has(part)))
    if (parts.at(-1) === "index" || (parts.length > 1 && parts.at(-1) === parts.at(-2))) parts.pop()
    return [name!, parts.join("/")] as const
  })
}

describe("package exports", () => {
  it.scopedLive(
    "every documented subpath imports through the package name with Node's resolution",
    () =>
      Effect.gen(function*() {
        const subpaths = documentedSubpaths()
        // The README's two examples, the three channel folders and the domain folder are among them.
        const names = subpaths.map(([, subpath]) => subpath)
        for (
          const expected of [
            "AgentHost",
            "channels/Invocations",
            "channels/Responses",
            "channels/Telegram",
            "channels/WebChat",
            "domain"
          ]
        ) {
          assert.include(names, expected)
        }
        assert.strictEqual(subpaths.length, Object.keys(Index).length)

        const dir = yield* TempDir.make("agent-host-consumer-")
        Fs.mkdirSync(Path.join(dir, "node_modules"))
        Fs.symlinkSync(root, Path.join(dir, "node_modules", "effect-agent-host"), "dir")
        Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ name: "consumer", type: "module" }))
        const script = [
          `const subpaths = ${JSON.stringify(names)}`,
          "const out = {}",
          "for (const subpath of subpaths) {",
          "  try { out[subpath] = Object.keys(await import(`effect-agent-host/${subpath}`)).sort() }",
          "  catch (error) { out[subpath] = String(error.code ?? error.message) }",
          "}",
          "out['.'] = Object.keys(await import('effect-agent-host')).sort()",
          "process.stdout.write(JSON.stringify(out))"
        ].join("\n")
        Fs.writeFileSync(Path.join(dir, "consumer.mjs"), script)
        const tsx = pathToFileURL(Path.join(root, "node_modules/tsx/dist/esm/index.mjs")).href
        // A failing import is reported per subpath by the script; a crash of the process fails the test.
        const { stdout } = yield* Effect.promise(() =>
          Util.promisify(execFile)(process.execPath, ["--import", tsx, Path.join(dir, "consumer.mjs")], {
            cwd: dir,
            timeout: 60_000,
            maxBuffer: 16 * 1024 * 1024
          })
        )
        const imported = JSON.parse(stdout) as Record<string, ReadonlyArray<string> | string>
        assert.deepStrictEqual(imported["."], Object.keys(Index).sort())
        for (const [name, subpath] of subpaths) {
          const expected = Object.keys((Index as Record<string, object>)[name]!).sort()
          assert.deepStrictEqual(imported[subpath], expected, `effect-agent-host/${subpath} (${name})`)
        }
      }),
    { timeout: 120_000 }
  )
})
