/**
 * Soak / fuzz probe for retained state (issue 13 point 16). Starts the `npm start` composition in this process
 * on 127.0.0.1 (SQLite state in a temp dir), sends `--requests` (default 2000) varied requests — bad JSON, big
 * bodies, many sessions, aborted streams, web chat, Responses — and prints, at checkpoints, the heap after a full
 * GC and the sizes of the host's retained structures.
 *
 *   node --expose-gc --import tsx bench/soak.ts [--requests 2000]
 *
 * Every loop is bounded; only loopback is used.
 */
import { ConfigProvider, Console, Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentHost } from "../src/core/AgentHost.js"
import { Sessions } from "../src/core/Sessions.js"
import { Turns } from "../src/core/Turns.js"
import * as Server from "../src/Server.js"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const total = arg("requests", 2000)

const gc = (globalThis as { gc?: () => void }).gc
const heapMb = () => {
  gc?.()
  gc?.()
  return Math.round(process.memoryUsage().heapUsed / 1e5) / 10
}

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "soak-"))
const config = ConfigProvider.fromMap(
  new Map([["AGENT_HOST_STATE_DIR", dir], ["PORT", String(20000 + (process.pid % 20000))]])
).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))

const send = async (url: string, init: RequestInit & { abortAfterFirstChunk?: boolean }) => {
  const abort = new AbortController()
  try {
    const res = await fetch(url, { ...init, signal: abort.signal })
    if (init.abortAfterFirstChunk === true) {
      await res.body?.getReader().read()
      abort.abort()
      return res.status
    }
    await res.text()
    return res.status
  } catch {
    return 0
  }
}

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body)
})

const allKinds = [
  (u: string) => send(`${u}/invocations`, json("{not json")),
  (u: string, i: number) => send(`${u}/invocations`, json({ message: `hello ${i}` })),
  (u: string, i: number) => send(`${u}/invocations`, json({ message: "x".repeat(200_000), session_id: `big-${i}` })),
  (u: string, i: number) => send(`${u}/invocations`, json({ message: `s ${i}`, session_id: `many-${i}` })),
  (u: string, i: number) =>
    send(`${u}/invocations`, { ...json({ message: `stream ${i}`, stream: true }), abortAfterFirstChunk: true }),
  (u: string, i: number) => send(`${u}/v1/responses`, json({ input: `resp ${i}` })),
  (u: string, i: number) =>
    send(`${u}/v1/responses`, { ...json({ input: `resp stream ${i}`, stream: true }), abortAfterFirstChunk: true }),
  (u: string, i: number) => send(`${u}/v1/responses`, json({ input: `bg ${i}`, background: true })),
  (u: string, i: number) =>
    send(`${u}/chat/messages`, {
      ...json({ message: `web ${i}`, user: `user_${i.toString().padStart(8, "0")}` }),
      abortAfterFirstChunk: true
    }),
  (u: string) => send(`${u}/v1/responses`, json({ input: [{ type: "nope" }] })),
  (u: string) => send(`${u}/nowhere`, { method: "GET" })
]

// `--only 3` runs one kind (by index) to see what it alone retains.
const only = arg("only", -1)
const kinds = only === -1 ? allKinds : [allKinds[only]!]

const program = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const context = yield* Layer.build(Server.layerFromEnv).pipe(Scope.extend(scope))
  const host = Context.get(context, AgentHost)
  const sessions = Context.get(context, Sessions)
  const turns = Context.get(context, Turns)
  const report = (done: number) =>
    Effect.gen(function*() {
      const s = yield* sessions.stats
      const h = yield* turns.historyCache
      yield* Console.log(JSON.stringify({
        requests: done,
        heapMb: heapMb(),
        rssMb: Math.round(process.memoryUsage().rss / 1e6),
        liveSessions: s.live,
        queued: s.queued,
        historyCacheSessions: h.sessions,
        historyCacheMb: Math.round(Number(h.bytes) / 1e5) / 10
      }))
    })
  yield* report(0)
  const batch = 20
  for (let done = 0; done < total; done += batch) {
    yield* Effect.promise(() =>
      Promise.all(Array.from({ length: batch }, (_, j) => kinds[(done + j) % kinds.length]!(host.url, done + j)))
    )
    if ((done + batch) % 500 === 0) yield* report(done + batch)
  }
  yield* Effect.promise(() => new Promise((r) => setTimeout(r, 500)))
  yield* report(total)
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(program.pipe(Logger.withMinimumLogLevel(LogLevel.None), Effect.withConfigProvider(config))).finally(
  () => Fs.rmSync(dir, { recursive: true, force: true })
)
