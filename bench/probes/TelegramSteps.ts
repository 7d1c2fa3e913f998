/**
 * Effect steps and CPU per Telegram webhook update, in process:
 * `npx tsx bench/probes/TelegramSteps.ts [updates=2000] [concurrency=50]`.
 * Builds the `npm start` composition (`Server.layerFromEnv`, SQLite state in a temp dir, default agent, the
 * Telegram channel in webhook mode, no streaming) against a minimal Bot API on loopback in this process, then
 * posts updates from distinct private chats to `POST /telegram/webhook`, `concurrency` at a time, and waits for
 * every reply's sendMessage. Steps are counted by a supervisor (deterministic under load); CPU is the whole
 * process's (client and fake included), so compare it only between runs of this probe.
 */
import type { Fiber } from "effect"
import {
  ConfigProvider,
  Console,
  Context,
  Effect,
  Exit,
  Layer,
  Logger,
  LogLevel,
  RuntimeFlags,
  RuntimeFlagsPatch,
  Scope,
  Supervisor
} from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { AgentHost } from "../../src/core/AgentHost.js"
import * as Server from "../../src/Server.js"

class StepCounter extends Supervisor.AbstractSupervisor<number> {
  steps = 0
  get value() {
    return Effect.sync(() => this.steps)
  }
  override onEffect<A, E>(_fiber: Fiber.RuntimeFiber<A, E>, _effect: Effect.Effect<unknown, unknown, unknown>) {
    this.steps++
  }
}

const updates = Number(process.argv[2] ?? 2_000)
const concurrency = Number(process.argv[3] ?? 50)
const counter = new StepCounter()
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "telegram-steps-"))
const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })

// The Bot API: counts calls by method, answers at once.
const calls = new Map<string, number>()
let sockets = 0
let messageId = 0
const fake = Http.createServer((request, response) => {
  const chunks: Array<Buffer> = []
  request.on("data", (c: Buffer) => chunks.push(c))
  request.on("end", () => {
    const method = (request.url ?? "").split("/").pop() ?? ""
    calls.set(method, (calls.get(method) ?? 0) + 1)
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>
    const result = method === "getMe" ?
      { id: 1, is_bot: true, first_name: "probe", username: "probe_bot" } :
      method === "sendMessage" ?
      { message_id: ++messageId, date: 0, chat: { id: Number(body.chat_id), type: "private" } } :
      true
    response.writeHead(200, { "content-type": "application/json" })
    response.end(JSON.stringify({ ok: true, result }))
  })
})
fake.on("connection", () => sockets++)

const post = (url: string, body: string) =>
  new Promise<number>((resolve, reject) => {
    const req = Http.request(url, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": "probe-secret" }
    }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", reject)
    req.end(body)
  })

let nextUpdate = 0
const update = () => {
  const i = nextUpdate++
  const user = 10_000 + i
  return JSON.stringify({
    update_id: 500_000 + i,
    message: {
      message_id: i + 1,
      date: 0,
      chat: { id: user, type: "private", first_name: `u${i}` },
      from: { id: user, is_bot: false, first_name: `u${i}` },
      text: `hello ${i}`
    }
  })
}

const sent = () => calls.get("sendMessage") ?? 0

/**
 * Posts `count` updates, `concurrency` at a time, then waits for their replies. An update answered 429 is posted
 * again after a second, as Telegram would. Resolves with the posts that failed and those refused (429).
 */
const burst = async (url: string, count: number) => {
  const target = sent() + count
  let left = count
  let failed = 0
  let refused = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) {
      const body = update()
      for (;;) {
        const status = await post(url, body).catch(() => 0)
        if (status !== 429) {
          if (status !== 200) failed++
          break
        }
        refused++
        await new Promise((r) => setTimeout(r, 1_000))
      }
    }
  }))
  const deadline = Date.now() + 60_000
  while (sent() < target - failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  return { failed, refused }
}

const program = Effect.gen(function*() {
  yield* Effect.promise(() => new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", () => resolve())))
  const apiBase = `http://127.0.0.1:${(fake.address() as { port: number }).port}`
  const config = ConfigProvider.fromMap(
    new Map([
      ["AGENT_HOST_STATE_DIR", dir],
      ["PORT", String(20000 + (process.pid % 20000))],
      ["TELEGRAM_BOT_TOKEN", "123456:probe-token"],
      ["TELEGRAM_API_BASE", apiBase],
      ["TELEGRAM_WEBHOOK_URL", "http://127.0.0.1/telegram/webhook"],
      ["TELEGRAM_SECRET_TOKEN", "probe-secret"],
      ["TELEGRAM_STREAM", "false"]
    ])
  ).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
  const scope = yield* Scope.make()
  const context = yield* Layer.build(Server.layerFromEnv).pipe(Scope.extend(scope), Effect.withConfigProvider(config))
  const host = Context.get(context, AgentHost)
  const url = `${host.url}/telegram/webhook`
  // Channels start after the listener: wait for the webhook to answer.
  while ((yield* Effect.promise(() => post(url, update()).catch(() => 0))) !== 200) yield* Effect.sleep("50 millis")
  yield* Effect.promise(() => burst(url, Math.min(updates, 500)))
  for (let round = 0; round < 3; round++) {
    const steps = counter.steps
    const before = new Map(calls)
    const socketsBefore = sockets
    const cpu = process.cpuUsage()
    const started = performance.now()
    const { failed, refused } = yield* Effect.promise(() => burst(url, updates))
    const ms = performance.now() - started
    const used = process.cpuUsage(cpu)
    const per = [...calls].map(([m, n]) => `${m} ${((n - (before.get(m) ?? 0)) / updates).toFixed(2)}`).join(", ")
    yield* Console.log(
      `telegram-webhook: ${((counter.steps - steps) / updates).toFixed(1)} steps/update, ` +
        `${((used.user + used.system) / updates).toFixed(0)} µs CPU/update (process), ` +
        `${
          (updates / (ms / 1000)).toFixed(0)
        } updates/s, ${failed} failed, ${refused} refused (429); Bot API calls/update: ${per}; ` +
        `${sockets - socketsBefore} new sockets to the Bot API`
    )
  }
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(
  program.pipe(
    Effect.supervised(counter),
    Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision)),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )
).finally(() => {
  agent.destroy()
  fake.close()
  Fs.rmSync(dir, { recursive: true, force: true })
})
