/**
 * `npm start` runs the bundle: `node scripts/start.cjs` → dist/main.cjs, rebuilt first when src/ changed (so
 * this test builds it when needed). Whatever resolves files at runtime (the web chat's assets, markdown-it,
 * better-sqlite3, the WAL checkpoint worker's code) must work from dist/ as it does from src/ under tsx; the code cache
 * one start writes is used by the next.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ServerProcess from "./utils/ServerProcess.js"

const root = Path.resolve(import.meta.dirname, "..")

/** `node scripts/start.cjs` (what `npm start` runs) on a free port, killed when the scope closes. */
const startBundle = (stateDir: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const port = yield* ServerProcess.freePort
      const child = spawn(process.execPath, [Path.join(root, "scripts/start.cjs")], {
        cwd: stateDir,
        env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", AGENT_HOST_STATE_DIR: stateDir },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const server = ServerProcess.running(child, port)
      return yield* ServerProcess.awaitReady(server, 110_000)
    }),
    (server) => server.kill("SIGKILL")
  )

// The launcher's own names for the current build and its code cache.
const bundle: {
  readonly currentBuild: () => string | undefined
  readonly cacheFile: (buildId: string, name?: string) => string
} = createRequire(import.meta.url)("../scripts/bundle.cjs")

/** The current build's main code cache file, with what tells a rewrite apart (undefined: none). */
const mainCache = () => {
  const buildId = bundle.currentBuild()
  if (buildId === undefined) return undefined
  const stat = Fs.statSync(bundle.cacheFile(buildId, "main"), { throwIfNoEntry: false })
  return stat === undefined ? undefined : { buildId, ino: stat.ino, mtimeMs: stat.mtimeMs, size: stat.size }
}

const get = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, type: response.headers.get("content-type") ?? "", body: await response.text() }
  })

const post = (url: string, body: unknown) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    })
    return { status: response.status, body: await response.json() as Record<string, unknown> }
  })

describe("npm start runs the bundle", () => {
  it.scopedLive(
    "serves the web chat page and its assets, Responses and Invocations, and keeps SQLite state across restarts",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "agent-host-bundle-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))

        const first = yield* startBundle(dir)
        const page = yield* get(`${first.url}/`)
        assert.strictEqual(page.status, 200)
        assert.include(page.type, "text/html")
        const assets = [...page.body.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((m) => m[1]!)
        // The page's script, its style and the Markdown renderer (markdown-it, from node_modules).
        assert.strictEqual(assets.length, 3, page.body)
        for (const asset of assets) {
          const served = yield* get(`${first.url}${asset}`)
          assert.strictEqual(served.status, 200, asset)
          assert.match(served.type, /^text\/(javascript|css)/, asset)
        }
        const responses = yield* post(`${first.url}/v1/responses`, { model: "x", input: "hi" })
        assert.strictEqual(responses.status, 200)
        assert.strictEqual(responses.body.status, "completed")
        const turn1 = yield* post(`${first.url}/invocations`, { message: "hi", session_id: "bundle" })
        assert.include(String(turn1.body.response), "turn 1")
        // WAL checkpoints run in a worker thread, whose code the one-file bundle carries (started 1 s after open)
        yield* Effect.sleep("100 millis").pipe(
          Effect.repeat({ until: () => first.output().includes("WAL checkpoints run in a worker thread") }),
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(first.output()) }),
          Effect.orDie
        )
        assert.notInclude(first.output(), "checkpoint worker died")
        assert.strictEqual(yield* first.kill("SIGTERM"), 0)
        // A start writes the V8 code cache of the bundle when it had none or the one it had was rejected.
        const cache = mainCache()
        assert.isDefined(cache, "no code cache after a start")

        // The same state directory: the session's history is in SQLite. The bundle is current: no rebuild.
        const second = yield* startBundle(dir)
        const turn2 = yield* post(`${second.url}/invocations`, { message: "again", session_id: "bundle" })
        assert.include(String(turn2.body.response), "turn 2")
        assert.notInclude(second.output(), "rebuilt")
        assert.strictEqual(yield* second.kill("SIGTERM"), 0)
        // The second start compiled with that cache and kept it: a rejected cache (V8 flags that differ between
        // the compile and the writing, say) would have been written again.
        assert.deepStrictEqual(mainCache(), cache)
      }),
    { timeout: 240_000 }
  )
})
