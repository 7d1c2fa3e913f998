/**
 * The package as a user gets it: `npm pack` of this repository, installed into a fresh project with only the
 * installs the README documents (the package and its peers, TypeScript and @types/node), then
 *   - every `exports` subpath imported with plain Node (compiled ESM, no tsx),
 *   - the README's library example compiled with `tsc` against the shipped declarations and run: it serves, and a
 *     turn through it answers.
 * The tarball is packed without running scripts: `npm ci` (the `prepare` script) already built dist/esm.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Util from "node:util"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

const root = Path.resolve(import.meta.dirname, "..")
const exec = Util.promisify(execFile)
const npm = process.platform === "win32" ? "npm.cmd" : "npm"

const manifest = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as {
  readonly exports: Record<string, string>
  readonly peerDependencies: Record<string, string>
}
const installedVersion = (name: string): string =>
  (JSON.parse(Fs.readFileSync(Path.join(root, "node_modules", name, "package.json"), "utf8")) as { version: string })
    .version

/** The README's "Using it as a library" example, verbatim. */
const readmeExample = (): string => {
  const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf("## Using it as a library"))
  const match = /```ts\n([\s\S]*?)```/.exec(section)
  assert.isNotNull(match, "README has a ```ts block under 'Using it as a library'")
  return match![1]!
}

class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

const run = (file: string, args: ReadonlyArray<string>, cwd: string, timeout: number) =>
  Effect.tryPromise({
    try: () => exec(file, args, { cwd, timeout, maxBuffer: 32 * 1024 * 1024, env: { ...process.env } }),
    catch: (error) => {
      const e = error as { stdout?: string; stderr?: string; message?: string }
      return new CommandFailed({
        message: `${file} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`
      })
    }
  })

describe("the packed package", () => {
  it.scopedLive(
    "installs into a fresh project; every subpath imports with plain Node; the README example compiles and serves",
    () =>
      Effect.gen(function*() {
        assert.isTrue(
          Fs.existsSync(Path.join(root, "dist/esm/index.js")) && Fs.existsSync(Path.join(root, "dist/esm/index.d.ts")),
          "dist/esm is built by `npm install` (prepare) or `npm run build`"
        )
        const dir = yield* TempDir.make("agent-host-package-")
        const { stdout: packed } = yield* run(
          npm,
          ["pack", "--ignore-scripts", "--json", "--pack-destination", dir],
          root,
          120_000
        )
        const [info] = JSON.parse(packed) as ReadonlyArray<
          { readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }
        >
        const files = new Set(info!.files.map((f) => f.path))
        // What an installed copy needs at runtime besides the JavaScript: declarations, the web chat's page.
        for (const file of ["dist/esm/index.js", "dist/esm/index.d.ts", "src/channels/WebChat/assets/index.html"]) {
          assert.isTrue(files.has(file), `the tarball holds ${file}`)
        }
        assert.isFalse([...files].some((f) => f.startsWith("test/") || f.startsWith("node_modules/")))

        const app = Path.join(dir, "app")
        Fs.mkdirSync(app)
        const dependencies: Record<string, string> = {
          "effect-agent-host": `file:${Path.join(dir, Path.basename(info!.filename))}`
        }
        for (const peer of Object.keys(manifest.peerDependencies)) dependencies[peer] = installedVersion(peer)
        Fs.writeFileSync(
          Path.join(app, "package.json"),
          JSON.stringify({
            name: "consumer",
            private: true,
            type: "module",
            dependencies,
            devDependencies: {
              typescript: installedVersion("typescript"),
              "@types/node": installedVersion("@types/node")
            }
          })
        )
        // From the npm cache `npm ci` filled; scripts off (no native build: the example keeps state in memory).
        yield* run(
          npm,
          ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
          app,
          300_000
        )

        // Every subpath, with plain Node: no tsx, no loader.
        const subpaths = Object.keys(manifest.exports).filter((k) => !k.includes("*") && k !== "./package.json")
        Fs.writeFileSync(
          Path.join(app, "imports.mjs"),
          [
            `const subpaths = ${JSON.stringify(subpaths)}`,
            "const out = {}",
            "for (const subpath of subpaths) {",
            "  const name = subpath === '.' ? 'effect-agent-host' : `effect-agent-host/${subpath.slice(2)}`",
            "  try { out[subpath] = Object.keys(await import(name)).length }",
            "  catch (error) { out[subpath] = String(error.code ?? error.message) }",
            "}",
            "process.stdout.write(JSON.stringify(out))"
          ].join("\n")
        )
        const { stdout: imported } = yield* run(process.execPath, ["imports.mjs"], app, 120_000)
        const counts = JSON.parse(imported) as Record<string, number | string>
        for (const subpath of subpaths) {
          assert.isNumber(counts[subpath], `effect-agent-host/${subpath} imports: ${counts[subpath]}`)
          assert.isAbove(counts[subpath] as number, 0, subpath)
        }

        // The package's bin, as npm installed it (node_modules/.bin): answers --help.
        const { stdout: help } = yield* run(
          Path.join(app, "node_modules/.bin/effect-agent-host"),
          ["--help"],
          app,
          60_000
        )
        assert.include(help, "tasks replay")

        // The README example, compiled by the project's own TypeScript against the shipped declarations.
        Fs.writeFileSync(Path.join(app, "main.ts"), readmeExample())
        Fs.writeFileSync(
          Path.join(app, "tsconfig.json"),
          JSON.stringify({
            compilerOptions: {
              target: "ES2022",
              module: "NodeNext",
              moduleResolution: "NodeNext",
              strict: true,
              skipLibCheck: true,
              outDir: "out",
              types: ["node"]
            },
            files: ["main.ts"]
          })
        )
        yield* run(process.execPath, [Path.join(app, "node_modules/typescript/bin/tsc"), "-p", "."], app, 180_000)

        const port = yield* ServerProcess.freePort
        const server = yield* Effect.acquireRelease(
          Effect.suspend(() => {
            const child = spawn(process.execPath, ["out/main.js"], {
              cwd: app,
              env: { ...process.env, PORT: String(port), HOST: "127.0.0.1" },
              stdio: ["ignore", "pipe", "pipe"]
            })
            return ServerProcess.awaitReady(ServerProcess.running(child, port), 60_000)
          }),
          (s) => s.kill("SIGKILL")
        )
        const reply = yield* Effect.promise(async () => {
          const response = await fetch(`${server.url}/invocations`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ message: "hi" })
          })
          return { status: response.status, body: (await response.json()) as Record<string, unknown> }
        })
        assert.strictEqual(reply.status, 200, JSON.stringify(reply.body))
        assert.strictEqual(reply.body["response"], "hello")
        // A graceful stop: SIGTERM ends the example's runMain with every finalizer run.
        assert.strictEqual(yield* server.kill("SIGTERM"), 0, server.output())
      }),
    { timeout: 600_000 }
  )
})
