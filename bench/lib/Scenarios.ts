/**
 * The scenarios. Each runs once per round and returns readings (or, in its first round, why it is skipped).
 * Baselines (raw-*) run against the raw node:http server started in the same run; host scenarios start what
 * `npm start` starts (scripts/start.cjs → the bundle dist/main.cjs of src/main.ts → Server.layerFromEnv,
 * default agent; rebuilt first if src/ changed) as a pinned child process with its state in a temp dir, and
 * probe their route first so a missing feature is skipped, not failed.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import type { BenchArgs } from "./Args.js"
import type { Loader, LoadResult } from "./Load.js"
import { load } from "./Load.js"
import type { Server } from "./Processes.js"
import {
  awaitReady,
  cpuSeconds,
  createDatabase,
  freePort,
  lastJsonLine,
  pinned,
  pinning,
  postgresCpuSeconds,
  root,
  run,
  spawnServer,
  tempDir
} from "./Processes.js"
import type { SseResult } from "./SseClient.js"
import { median } from "./Stats.js"

export interface Reading {
  readonly metric: string
  readonly unit: string
  readonly value: number
  readonly better: "higher" | "lower"
  /** `scenario/metric` of the raw figure this one is a ratio to. */
  readonly baseline?: string
}

export type RoundOutcome =
  | { readonly _tag: "Readings"; readonly readings: ReadonlyArray<Reading>; readonly notes?: ReadonlyArray<string> }
  | { readonly _tag: "Skip"; readonly reason: string }

export interface Context {
  readonly args: BenchArgs
  readonly loader: Loader
  /** The raw baseline server, started on first use and shared by every round. */
  readonly raw: () => Promise<Server>
  readonly warmupSeconds: number
  readonly log: (line: string) => void
}

export interface Scenario {
  readonly name: string
  readonly title: string
  readonly measures: string
  readonly baseline?: boolean
  /** Baseline scenarios whose figures this one is a ratio to. */
  readonly needs: ReadonlyArray<string>
  readonly round: (ctx: Context, round: number) => Promise<RoundOutcome>
}

const readings = (list: ReadonlyArray<Reading>, notes?: ReadonlyArray<string>): RoundOutcome => ({
  _tag: "Readings",
  readings: list,
  ...(notes === undefined ? {} : { notes })
})
const skip = (reason: string): RoundOutcome => ({ _tag: "Skip", reason })

const tsxLoader = import.meta.resolve("tsx")
/** What `npm start` runs: the launcher of the prebuilt bundle. */
const launcher = Path.join(root, "scripts/start.cjs")

// Host -------------------------------------------------------------------------------------------------------

export interface Host {
  readonly server: Server
  readonly dir: string
  readonly readyMs: number
  readonly stop: () => Promise<void>
}

/**
 * Starts the host as `npm start` does (`node scripts/start.cjs`) pinned to the server core, cwd and state in a
 * fresh temp dir (or `options.dir`, kept on stop), logs to a file there; readiness polled every `options.pollMs`.
 */
export const startHost = async (
  ctx: Context,
  env: Record<string, string> = {},
  options: { readonly dir?: string; readonly pollMs?: number } = {}
): Promise<Host> => {
  const dir = options.dir ?? tempDir("bench-host")
  const server = await spawnServer({
    name: "host",
    nodeArgs: [launcher],
    cwd: dir,
    logFile: Path.join(dir, "host.log"),
    env: {
      LOG_LEVEL: ctx.args.logLevel,
      AGENT_HOST_STATE_DIR: dir,
      STATE_DIR: dir,
      ...env
    }
  })
  const ready = await awaitReady(server, 60_000, options.pollMs ?? 5)
  return {
    server,
    dir,
    readyMs: ready - server.spawnedAt,
    stop: async () => {
      await server.stop()
      if (options.dir === undefined) Fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

interface Probed {
  readonly status: number
  readonly body: string
}

export const post = (url: string, body: string, headers: Record<string, string> = {}): Promise<Probed> =>
  fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", ...headers },
    signal: AbortSignal.timeout(10_000)
  }).then(async (r) => ({ status: r.status, body: await r.text() }))

const probeRoute = async (
  url: string,
  body: string,
  headers: Record<string, string> = {}
): Promise<string | Probed> => {
  const probed = await post(url, body, headers)
  if (probed.status === 404 || probed.status === 405) {
    return `not available: ${new URL(url).pathname} answered ${probed.status} (route not mounted on this branch)`
  }
  return probed
}

const withHost = async (
  ctx: Context,
  env: Record<string, string>,
  use: (host: Host) => Promise<RoundOutcome>
): Promise<RoundOutcome> => {
  const host = await startHost(ctx, env)
  try {
    return await use(host)
  } finally {
    await host.stop()
  }
}

// JSON load ----------------------------------------------------------------------------------------------------

// Server CPU time per unit of work: steadier than throughput when the machine is shared, because it does not
// count the time the server waited for a core.
const cpuPer = (server: Server, work: () => Promise<number>) => async (): Promise<number> => {
  const before = cpuSeconds(server.child.pid)
  const units = await work()
  const after = cpuSeconds(server.child.pid)
  return before === undefined || after === undefined || units === 0 ? NaN : ((after - before) * 1e6) / units
}

const jsonLoad = async (ctx: Context, server: Server, url: string, body: string) => {
  await load(ctx.loader, { url, body, connections: ctx.args.connections, durationSeconds: ctx.warmupSeconds })
  let result: LoadResult | undefined
  const cpu = await cpuPer(server, async () => {
    result = await load(ctx.loader, {
      url,
      body,
      connections: ctx.args.connections,
      durationSeconds: ctx.args.duration
    })
    return result.requests
  })()
  return { ...result!, cpuMicrosPerRequest: cpu }
}

const jsonReadings = (
  result: LoadResult & { readonly cpuMicrosPerRequest: number },
  baseline: string | undefined
): RoundOutcome => {
  const notes = result.failures > 0 ? [`${result.failures} failed or non-2xx responses`] : undefined
  return readings([
    {
      metric: "server CPU/req",
      unit: "µs",
      value: result.cpuMicrosPerRequest,
      better: "lower",
      ...(baseline === undefined ? {} : { baseline: `${baseline}/server CPU/req` })
    },
    {
      metric: "req/s",
      unit: "req/s",
      value: result.requestsPerSecond,
      better: "higher",
      ...(baseline === undefined ? {} : { baseline: `${baseline}/req/s` })
    },
    {
      metric: "p50",
      unit: "ms",
      value: result.p50,
      better: "lower",
      ...(baseline === undefined ? {} : { baseline: `${baseline}/p50` })
    },
    {
      metric: "p99",
      unit: "ms",
      value: result.p99,
      better: "lower",
      ...(baseline === undefined ? {} : { baseline: `${baseline}/p99` })
    }
  ], notes)
}

const hostJson = (path: string, body: string): Scenario["round"] => (ctx) =>
  withHost(ctx, {}, async (host) => {
    const url = `${host.server.url}${path}`
    const probed = await probeRoute(url, body)
    if (typeof probed === "string") return skip(probed)
    if (probed.status !== 200) return skip(`not available: ${path} answered ${probed.status}: ${probed.body}`)
    return jsonReadings(await jsonLoad(ctx, host.server, url, body), "raw-json")
  })

// SSE load -----------------------------------------------------------------------------------------------------

const sseRun = async (ctx: Context, url: string, body: string, connections: number, seconds: number) => {
  const options = JSON.stringify({ url, body, connections, durationSeconds: seconds })
  const { args, command } = pinned(pinning.load, process.execPath, [
    "--import",
    tsxLoader,
    Path.join(root, "bench/lib/SseClient.ts"),
    options
  ])
  const result = await run(command, args, (seconds + 30) * 1_000)
  const json = lastJsonLine<SseResult>(result.stdout)
  if (json === undefined) throw new Error(`the SSE client failed (${result.code}): ${result.stderr}`)
  return json
}

const sseReadings = async (
  ctx: Context,
  server: Server,
  url: string,
  body: string,
  baseline: string | undefined
) => {
  const unloadedSeconds = Math.min(3, ctx.args.duration)
  const unloaded = await sseRun(ctx, url, body, 1, unloadedSeconds)
  await sseRun(ctx, url, body, ctx.args.connections, ctx.warmupSeconds)
  let loaded: SseResult | undefined
  const cpu = await cpuPer(server, async () => {
    loaded = await sseRun(ctx, url, body, ctx.args.connections, ctx.args.duration)
    return loaded.events
  })()
  if (loaded === undefined) throw new Error("the SSE run did not finish")
  const failures = unloaded.failures + loaded.failures
  const notes = failures > 0
    ? [`${failures} failed streams (first: ${loaded.firstFailure ?? unloaded.firstFailure})`]
    : []
  const base = (metric: string) => baseline === undefined ? {} : { baseline: `${baseline}/${metric}` }
  return readings([
    { metric: "events/s", unit: "ev/s", value: loaded.eventsPerSecond, better: "higher", ...base("events/s") },
    { metric: "server CPU/event", unit: "µs", value: cpu, better: "lower", ...base("server CPU/event") },
    { metric: "streams/s", unit: "st/s", value: loaded.streamsPerSecond, better: "higher", ...base("streams/s") },
    { metric: "events/stream", unit: "ev", value: loaded.events / Math.max(1, loaded.streams), better: "higher" },
    { metric: "TTFB unloaded p50", unit: "ms", value: unloaded.ttfbP50, better: "lower", ...base("TTFB unloaded p50") },
    {
      metric: `TTFB @${ctx.args.connections}c p50`,
      unit: "ms",
      value: loaded.ttfbP50,
      better: "lower",
      ...base(`TTFB @${ctx.args.connections}c p50`)
    }
  ], notes)
}

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ")

const hostSse = (path: string, body: string): Scenario["round"] => (ctx) =>
  withHost(ctx, {}, async (host) => {
    const url = `${host.server.url}${path}`
    const probed = await probeRoute(url, body)
    if (typeof probed === "string") return skip(probed)
    if (probed.status !== 200 || !probed.body.includes("data:")) {
      return skip(
        `not available: ${path} answered ${probed.status} without an event stream: ${probed.body.slice(0, 200)}`
      )
    }
    return sseReadings(ctx, host.server, url, body, "raw-sse")
  })

// Floor --------------------------------------------------------------------------------------------------------

/**
 * The same load against bench/servers/floor.cjs: node:http and better-sqlite3 doing a stored turn's durable
 * work by hand, no framework. Its ratio to raw is the most any server can reach with SQLite-durable turns on
 * this machine; the host's figures read against both.
 */
const floorRound =
  (body: string, kind: "json" | "sse", env: Record<string, string> = {}): Scenario["round"] => async (ctx) => {
    const dir = tempDir("bench-floor")
    const server = await spawnServer({
      name: "floor",
      nodeArgs: [Path.join(root, "bench/servers/floor.cjs")],
      cwd: dir,
      logFile: Path.join(dir, "floor.log"),
      env: { STATE_DIR: dir, ...env }
    })
    try {
      await awaitReady(server, 30_000, 5)
      const url = `${server.url}/v1/responses`
      return kind === "json"
        ? jsonReadings(await jsonLoad(ctx, server, url, body), "raw-json")
        : await sseReadings(ctx, server, url, body, "raw-sse")
    } finally {
      await server.stop()
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }

// Telegram -----------------------------------------------------------------------------------------------------

const telegramToken = "123456:bench-token"
const telegramSecret = "bench-secret"

interface FakeBotApi {
  readonly url: string
  readonly sent: Array<number>
  readonly close: () => Promise<void>
}

/** A fake Bot API on loopback: answers every method (getMe, setMyCommands, setWebhook, ...), records when each sendMessage arrived. */
const fakeBotApi = (): Promise<FakeBotApi> =>
  new Promise((resolve) => {
    const sent: Array<number> = []
    let messageId = 0
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (c: Buffer) => chunks.push(c))
      request.on("end", () => {
        const method = (request.url ?? "").split("/").pop()?.split("?")[0] ?? ""
        let body: Record<string, unknown> = {}
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>
        } catch {
          // form bodies: answer anyway
        }
        const reply = (result: unknown, delay = 0) =>
          setTimeout(() => {
            response.writeHead(200, { "content-type": "application/json" })
            response.end(JSON.stringify({ ok: true, result }))
          }, delay)
        if (method === "sendMessage" || method === "editMessageText") {
          // One sendMessage per turn (the host runs with TELEGRAM_STREAM=false); edits are not turns.
          if (method === "sendMessage") sent.push(performance.now())
          const chat = { id: Number(body.chat_id ?? 0), type: "private" }
          return reply({ message_id: ++messageId, date: Math.floor(Date.now() / 1000), chat, text: body.text ?? "" })
        }
        if (method === "getMe") return reply({ id: 1, is_bot: true, first_name: "bench", username: "bench_bot" })
        if (method === "getUpdates") return reply([], 1_000)
        return reply(true)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      resolve({
        url: `http://127.0.0.1:${port}`,
        sent,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })

const telegramUpdate = (i: number) => {
  const user = 10_000 + i
  return JSON.stringify({
    update_id: 500_000 + i,
    message: {
      message_id: i + 1,
      date: Math.floor(Date.now() / 1000),
      chat: { id: user, type: "private", first_name: `u${i}` },
      from: { id: user, is_bot: false, first_name: `u${i}` },
      text: `hello ${i}`
    }
  })
}

// The load side of this scenario (the fake Bot API and the webhook posts) runs in the bench's own process: pin
// it to the load core for the round, as wrk and the SSE client are, so it does not take the server's core.
const pinSelf = (cpu: string | undefined): () => void => {
  if (cpu === undefined) return () => {}
  try {
    const before = execFileSync("taskset", ["-p", String(process.pid)], { encoding: "utf8" }).trim().split(" ").pop()
    execFileSync("taskset", ["-a", "-cp", cpu, String(process.pid)], { stdio: "ignore" })
    return () => {
      if (before !== undefined) execFileSync("taskset", ["-a", "-p", before, String(process.pid)], { stdio: "ignore" })
    }
  } catch {
    return () => {}
  }
}

// Keep-alive connections for the webhook posts: fetch costs ~3x the CPU of node:http per request here, CPU the
// load core needs for the fake Bot API.
const webhookAgent = new Http.Agent({ keepAlive: true })

const postUpdate = (url: string, body: string, headers: Record<string, string>) =>
  new Promise<{ readonly status: number; readonly retryAfter: number }>((resolve) => {
    const request = Http.request(url, {
      method: "POST",
      agent: webhookAgent,
      headers: { "content-type": "application/json", ...headers },
      timeout: 10_000
    }, (response) => {
      response.resume()
      response.on(
        "end",
        () => resolve({ status: response.statusCode ?? 0, retryAfter: Number(response.headers["retry-after"] ?? 1) })
      )
    })
    request.on("timeout", () => request.destroy(new Error("timed out")))
    request.on("error", () => resolve({ status: 0, retryAfter: 0 }))
    request.end(body)
  })

const telegramRound: Scenario["round"] = async (ctx) => {
  const api = await fakeBotApi()
  const unpin = pinSelf(pinning.load)
  try {
    // src/channels/Telegram/Telegram.ts `fromConfig`: webhook mode needs a webhook URL (only passed to the fake's
    // setWebhook) and a secret token. No streaming, so each turn is one sendMessage.
    const env = {
      TELEGRAM_BOT_TOKEN: telegramToken,
      TELEGRAM_API_BASE: api.url,
      TELEGRAM_WEBHOOK_URL: "http://127.0.0.1/telegram/webhook",
      TELEGRAM_SECRET_TOKEN: telegramSecret,
      TELEGRAM_STREAM: "false"
    }
    return await withHost(ctx, env, async (host) => {
      const url = `${host.server.url}/telegram/webhook`
      const headers = { "x-telegram-bot-api-secret-token": telegramSecret }
      const probed = await probeRoute(url, telegramUpdate(-1), headers)
      if (typeof probed === "string") return skip(probed)
      if (probed.status >= 300) return skip(`not available: the webhook answered ${probed.status}: ${probed.body}`)
      // Wait for the probe's own reply so it is not counted.
      const settle = performance.now() + 2_000
      while (api.sent.length === 0 && performance.now() < settle) await new Promise((r) => setTimeout(r, 10))
      api.sent.length = 0
      const updates = ctx.args.smoke ? 100 : 2_000
      const acks: Array<number> = []
      let failures = 0
      let refused = 0
      let next = 0
      const cpuBefore = cpuSeconds(host.server.child.pid)
      const t0 = performance.now()
      // Like Telegram: an update answered 429 is delivered again after its retry-after (the worker waits, so
      // the chat's later updates wait too), a failed or timed-out post is not.
      const worker = async () => {
        while (next < updates) {
          const body = telegramUpdate(next++)
          for (;;) {
            const s = performance.now()
            const r = await postUpdate(url, body, headers)
            acks.push(performance.now() - s)
            if (r.status !== 429) {
              if (r.status >= 300 || r.status === 0) failures++
              break
            }
            refused++
            await new Promise((resolve) => setTimeout(resolve, Math.max(1, r.retryAfter) * 1_000))
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(ctx.args.connections, updates) }, worker))
      const deadline = performance.now() + 30_000
      while (api.sent.length < updates - failures && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10))
      }
      const cpuAfter = cpuSeconds(host.server.child.pid)
      const last = api.sent.length === 0 ? performance.now() : api.sent[api.sent.length - 1]!
      const sorted = [...acks].sort((a, b) => a - b)
      const notes: Array<string> = []
      if (failures > 0) notes.push(`${failures} webhook posts failed (not 2xx or 429, or no answer within 10 s)`)
      if (refused > 0) notes.push(`${refused} webhook posts answered 429 (queue full) and delivered again`)
      if (api.sent.length < updates) notes.push(`${api.sent.length} of ${updates} updates answered within 30 s`)
      const cpuPerTurn = cpuBefore === undefined || cpuAfter === undefined || api.sent.length === 0 ?
        NaN :
        ((cpuAfter - cpuBefore) * 1e6) / api.sent.length
      return readings([
        { metric: "ack p50", unit: "ms", value: median(sorted), better: "lower" },
        { metric: "ack p99", unit: "ms", value: sorted[Math.ceil(sorted.length * 0.99) - 1] ?? NaN, better: "lower" },
        { metric: "turns/s", unit: "turns/s", value: api.sent.length / ((last - t0) / 1_000), better: "higher" },
        { metric: "server CPU/turn", unit: "µs", value: cpuPerTurn, better: "lower" },
        { metric: "refused posts (429)", unit: "posts", value: refused, better: "lower" },
        { metric: "failed posts", unit: "posts", value: failures, better: "lower" }
      ], notes)
    })
  } finally {
    unpin()
    await api.close()
  }
}

// In-process probes --------------------------------------------------------------------------------------------

const runnerModule = Path.join(root, "src/delivery/TaskRunner.ts")

const runProbe = async (script: string, args: ReadonlyArray<string>, nodeFlags: ReadonlyArray<string> = []) => {
  const cmd = pinned(pinning.server, process.execPath, [
    ...nodeFlags,
    "--import",
    tsxLoader,
    Path.join(root, script),
    ...args
  ])
  const result = await run(cmd.command, cmd.args, 300_000)
  const json = lastJsonLine<Record<string, unknown>>(result.stdout)
  if (json === undefined) throw new Error(`${script} failed (${result.code}): ${result.stderr.slice(-2_000)}`)
  return json
}

const runnerTasks: Scenario["round"] = async (ctx) => {
  if (!Fs.existsSync(runnerModule)) {
    return skip("not available: src/delivery/TaskRunner.ts does not exist on this branch")
  }
  const tasks = ctx.args.smoke ? 2_000 : 50_000
  const dir = tempDir("bench-runner")
  try {
    const out = await runProbe("bench/probes/Runner.ts", ["throughput", String(tasks), dir])
    if (typeof out.skip === "string") return skip(`not available: ${out.skip}`)
    return readings([{ metric: "tasks/s", unit: "tasks/s", value: Number(out.tasksPerSecond), better: "higher" }])
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const runnerResume: Scenario["round"] = async (ctx) => {
  if (!Fs.existsSync(runnerModule)) {
    return skip("not available: src/delivery/TaskRunner.ts does not exist on this branch")
  }
  const tasks = ctx.args.smoke ? 1_000 : 10_000
  const dir = tempDir("bench-runner")
  try {
    const filled = await runProbe("bench/probes/Runner.ts", ["fill", String(tasks), dir])
    if (typeof filled.skip === "string") return skip(`not available: ${filled.skip}`)
    const out = await runProbe("bench/probes/Runner.ts", ["resume", String(tasks), dir])
    if (typeof out.skip === "string") return skip(`not available: ${out.skip}`)
    return readings([
      { metric: `resume ${tasks} pending`, unit: "ms", value: Number(out.resumeMs), better: "lower" },
      { metric: `pick up ${tasks} pending`, unit: "ms", value: Number(out.startMs), better: "lower" }
    ])
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const sessionMemory: Scenario["round"] = async (ctx) => {
  const list: Array<Reading> = []
  for (const keys of ctx.args.sessionKeys) {
    const out = await runProbe("bench/probes/SessionMemory.ts", [String(keys)], ["--expose-gc"])
    const at = keys >= 1_000 ? `${keys / 1_000}k` : String(keys)
    list.push(
      { metric: `live heap/key @${at}`, unit: "B", value: Number(out.liveHeapPerKey), better: "lower" },
      { metric: `live RSS/key @${at}`, unit: "B", value: Number(out.liveRssPerKey), better: "lower" },
      { metric: `idle heap/key @${at}`, unit: "B", value: Number(out.idleHeapPerKey), better: "lower" }
    )
  }
  return readings(list)
}

// V8's code caches of the bundles, written by scripts/start.cjs when a host started without one exits.
const codeCaches = () =>
  Fs.readdirSync(Path.join(root, "dist"))
    .filter((name) => /^(main|lazy)\.\w+\.v8cache$/.test(name))
    .map((name) => Path.join(root, "dist", name))

const coldStart: Scenario["round"] = async (ctx) => {
  const samples = ctx.args.smoke ? 1 : 3
  // Untimed: builds the bundle if src/ changed since the last build (as `npm start` would).
  await (await startHost(ctx)).stop()
  // The first start after a build: no code cache yet (it writes one on exit).
  for (const file of codeCaches()) Fs.rmSync(file, { force: true })
  const first = await startHost(ctx)
  await first.stop()
  const raw: Array<number> = []
  const host: Array<number> = []
  const restart: Array<number> = []
  // Readiness polled every 2 ms for both servers. Each host sample starts on a new state dir (a first start: the
  // migrations run), then again on the same dir (what a second `npm start` does: .agent-host/ is kept).
  for (let i = 0; i < samples; i++) {
    const server = await spawnServer({ name: "raw", nodeArgs: [Path.join(root, "bench/servers/raw.mjs")] })
    raw.push((await awaitReady(server, 30_000, 2)) - server.spawnedAt)
    await server.stop()
    const h = await startHost(ctx, {}, { pollMs: 2 })
    host.push(h.readyMs)
    await h.server.stop()
    const again = await startHost(ctx, {}, { dir: h.dir, pollMs: 2 })
    restart.push(again.readyMs)
    await again.stop()
    await h.stop()
  }
  return readings([
    {
      metric: "spawn → ready",
      unit: "ms",
      value: median(host),
      better: "lower",
      baseline: "cold-start/raw spawn → ready"
    },
    {
      metric: "restart spawn → ready (same state dir)",
      unit: "ms",
      value: median(restart),
      better: "lower",
      baseline: "cold-start/raw spawn → ready"
    },
    { metric: "raw spawn → ready", unit: "ms", value: median(raw), better: "lower" },
    { metric: "first spawn → ready (no code cache)", unit: "ms", value: first.readyMs, better: "lower" }
  ])
}

// Cluster ------------------------------------------------------------------------------------------------------

/**
 * `AGENT_HOST_CLUSTER=postgres`: 1, 2 and 3 runners (each `npm start`, pinned to the server core like every host)
 * on a private Postgres (test/utils/PostgresServer.ts), a fresh database per size. The load is split evenly over
 * the runners (one loader per runner, connections/n each); every request is a new session, so turns spread over
 * the shards and most are forwarded to another runner once there are several.
 */
const clusterRound: Scenario["round"] = async (ctx) => {
  const PostgresServer = await import("../../test/utils/PostgresServer.js")
  if (PostgresServer.binDir() === undefined) {
    return skip("not available: no Postgres binaries (apt-get install postgresql)")
  }
  const pgDir = tempDir("bench-pg")
  try {
    const base = await PostgresServer.start(pgDir)
    const list: Array<Reading> = []
    const rates: Array<number> = []
    for (const size of [1, 2, 3]) {
      const name = `bench_${size}_${Date.now()}`
      await createDatabase(PostgresServer.binDir()!, base, name)
      const hosts: Array<Host> = []
      try {
        for (let i = 0; i < size; i++) {
          hosts.push(
            await startHost(ctx, {
              AGENT_HOST_CLUSTER: "postgres",
              AGENT_HOST_STATE: "postgres",
              DATABASE_URL: `${base}/${name}`,
              AGENT_HOST_CLUSTER_RUNNER_PORT: String(await freePort()),
              AGENT_HOST_CLUSTER_SHARDS: "60",
              AGENT_HOST_CLUSTER_LOCK_EXPIRATION: "4 seconds",
              AGENT_HOST_CLUSTER_REFRESH_INTERVAL: "500 millis"
            })
          )
        }
        // The shard assignment settles once every runner has seen the others.
        await new Promise((r) => setTimeout(r, 4_000))
        const body = JSON.stringify({ message: "hi" })
        const url = (h: Host) => `${h.server.url}/invocations`
        const probed = await post(url(hosts[0]!), body)
        if (probed.status !== 200) return skip(`not available: /invocations answered ${probed.status}: ${probed.body}`)
        const connections = Math.max(1, Math.ceil(ctx.args.connections / size))
        await Promise.all(
          hosts.map((h) => load(ctx.loader, { url: url(h), body, connections, durationSeconds: ctx.warmupSeconds }))
        )
        const hostCpu = () => hosts.reduce((n, h) => n + (cpuSeconds(h.server.child.pid) ?? NaN), 0)
        const hostsBefore = hostCpu()
        const pgBefore = postgresCpuSeconds(pgDir)
        const results = await Promise.all(
          hosts.map((h) => load(ctx.loader, { url: url(h), body, connections, durationSeconds: ctx.args.duration }))
        )
        const hostsUsed = hostCpu() - hostsBefore
        const pgUsed = postgresCpuSeconds(pgDir) - pgBefore
        const rate = results.reduce((n, r) => n + r.requestsPerSecond, 0)
        const turns = results.reduce((n, r) => n + r.requests, 0)
        rates.push(rate)
        const runners = `${size} runner${size === 1 ? "" : "s"}`
        list.push(
          { metric: `turns/s ${runners}`, unit: "turns/s", value: rate, better: "higher" },
          // CPU per turn does not count time spent waiting for the shared core: the cost that grows with runners.
          { metric: `hosts CPU/turn ${runners}`, unit: "µs", value: (hostsUsed * 1e6) / turns, better: "lower" },
          { metric: `Postgres CPU/turn ${runners}`, unit: "µs", value: (pgUsed * 1e6) / turns, better: "lower" }
        )
        const failures = results.reduce((n, r) => n + r.failures, 0)
        if (failures > 0) ctx.log(`cluster ${size}: ${failures} failed or non-2xx responses`)
      } finally {
        for (const h of hosts) await h.stop()
      }
    }
    list.push(
      { metric: "2 runners / 1", unit: "x", value: rates[1]! / rates[0]!, better: "higher" },
      { metric: "3 runners / 1", unit: "x", value: rates[2]! / rates[0]!, better: "higher" }
    )
    return readings(list)
  } finally {
    PostgresServer.stop(pgDir)
    Fs.rmSync(pgDir, { recursive: true, force: true })
  }
}

// The list -----------------------------------------------------------------------------------------------------

const invocationSseInput = words(36)
const responsesSseInput = words(29)

export const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "raw-json",
    title: "raw node:http JSON",
    measures: "baseline: POST a small JSON body, parse it, answer a small JSON object",
    baseline: true,
    needs: [],
    round: async (ctx) => {
      const raw = await ctx.raw()
      return jsonReadings(await jsonLoad(ctx, raw, `${raw.url}/json`, JSON.stringify({ message: "hi" })), undefined)
    }
  },
  {
    name: "raw-sse",
    title: "raw node:http SSE",
    measures: "baseline: POST, answer a 50-event SSE stream written at once",
    baseline: true,
    needs: [],
    round: async (ctx) => {
      const raw = await ctx.raw()
      return sseReadings(ctx, raw, `${raw.url}/sse`, JSON.stringify({ message: "hi" }), undefined)
    }
  },
  {
    name: "invocations-json",
    title: "Invocations JSON",
    measures: "POST /invocations {message} through the host and default agent, new session per request",
    needs: ["raw-json"],
    round: hostJson("/invocations", JSON.stringify({ message: "hi" }))
  },
  {
    name: "invocations-sse",
    title: "Invocations SSE",
    measures: "POST /invocations {message, stream:true}: ~50 data frames per stream (one per word + [DONE])",
    needs: ["raw-sse"],
    round: hostSse("/invocations", JSON.stringify({ message: invocationSseInput, stream: true }))
  },
  {
    name: "responses-json",
    title: "Responses JSON",
    measures: "POST /v1/responses {model, input:\"hi\"} (OpenAI Responses channel)",
    needs: ["raw-json"],
    round: hostJson("/v1/responses", JSON.stringify({ model: "x", input: "hi" }))
  },
  {
    name: "responses-sse",
    title: "Responses SSE",
    measures: "POST /v1/responses {stream:true}: ~50 events per stream; events/s and TTFB, unloaded and loaded",
    needs: ["raw-sse"],
    round: hostSse("/v1/responses", JSON.stringify({ model: "x", input: responsesSseInput, stream: true }))
  },
  {
    name: "floor-json",
    title: "Floor: stored turn by hand, JSON",
    measures: "reference: POST /v1/responses to bench/servers/floor.cjs (node:http + better-sqlite3, no framework)",
    needs: ["raw-json"],
    round: floorRound(JSON.stringify({ model: "x", input: "hi" }), "json")
  },
  {
    name: "floor-effect-json",
    title: "Floor in one Effect fiber per request, JSON",
    measures: "reference: floor-json with each request run as one Effect fiber (body read, parse, commit wait)",
    needs: ["raw-json"],
    round: floorRound(JSON.stringify({ model: "x", input: "hi" }), "json", { FLOOR_EFFECT: "1" })
  },
  {
    name: "floor-sse",
    title: "Floor: stored turn by hand, SSE",
    measures: "reference: the Responses SSE body to bench/servers/floor.cjs: the host's 50 events, stored",
    needs: ["raw-sse"],
    round: floorRound(JSON.stringify({ model: "x", input: responsesSseInput, stream: true }), "sse")
  },
  {
    name: "telegram-webhook",
    title: "Telegram webhook burst",
    measures:
      "a burst of updates from distinct chats to POST /telegram/webhook: ack latency, replies/s to a fake Bot API",
    needs: [],
    round: telegramRound
  },
  {
    name: "runner-tasks",
    title: "Durable runner throughput",
    measures:
      "TaskRunner.layerSqlite on the real state DB: schedule N no-op tasks (512 at once), time until all succeeded",
    needs: [],
    round: runnerTasks
  },
  {
    name: "runner-resume",
    title: "Runner resume after restart",
    measures:
      "TaskRunner.layerSqlite: 10k pending tasks left by an exited process; after reopening, time until all succeeded",
    needs: [],
    round: runnerResume
  },
  {
    name: "cold-start",
    title: "Cold start",
    measures: "spawn `node scripts/start.cjs` (npm start: the prebuilt bundle, V8 code cache warm) → first 200 " +
      "on GET /readiness; first: the same right after a build (no code cache); raw: spawn raw.mjs → first 200",
    needs: [],
    round: coldStart
  },
  {
    name: "cluster",
    title: "Cluster (Postgres)",
    measures: "AGENT_HOST_CLUSTER=postgres: Invocations turns/s (new session each) over 1, 2, 3 runners on one " +
      "Postgres, load split evenly; ratios to 1 runner",
    needs: [],
    round: clusterRound
  },
  {
    name: "session-memory",
    title: "Session actor memory",
    measures: "in-process Sessions.layer: heap/RSS per key after one turn on N keys (live), and after a sweep (idle)",
    needs: [],
    round: sessionMemory
  }
]
