// The floor: what a stored Responses turn costs with no framework at all. Plain node:http and better-sqlite3
// doing by hand the durable work `POST /v1/responses` does in the host with SQLite state (store on): parse and
// check the body, ids from a CSPRNG pool, the Responses resource, the input and reply history rows and the
// response row group-committed once per macrotask in WAL mode, the reply sent after its commit; WAL checkpoints
// on a worker thread. `stream: true` answers the same event sequence the host streams (created, in_progress,
// item and part added, one delta per word, the done events, completed after the commit).
//
// It is a reference, not a server: no sessions, agent, authorization, hooks, limits or error shapes. A bar this
// server misses is out of reach of any server that keeps turns durable in SQLite on the machine.
// Plain CommonJS, like raw.mjs's plain JavaScript: nothing to build, node's own start-up.
//
// With FLOOR_EFFECT=1 the same work runs as one Effect fiber per request, the least a turn path on Effect does:
// the body read (`Effect.async`), the parse (`Effect.try`), the checks, and the wait for the commit
// (`Effect.async`), forked from the default runtime (src/http/NodeHandler.ts forks a routed request the same
// way, from its own prebuilt runtime).
"use strict"
// The V8 setting the host applies once started (src/internal/V8Tuning.ts): the floor gets it too.
require("node:v8").setFlagsFromString("--no-allocation-site-pretenuring")
const Crypto = require("node:crypto")
const Http = require("node:http")
const Path = require("node:path")
const { Worker } = require("node:worker_threads")
const Database = require("better-sqlite3")

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? "127.0.0.1"
const file = Path.join(process.env.STATE_DIR ?? ".", "floor.db")
// The host checkpoints every 100 ms (src/state/sqlite/Checkpointer.ts); for this server every 10 ms gave the
// better tail on one core (shorter checkpoint slices between the requests), so the floor uses it.
const checkpointEveryMs = Number(process.env.FLOOR_CHECKPOINT_MS ?? 10)

const db = new Database(file)
db.pragma("journal_mode = WAL")
db.pragma("synchronous = NORMAL")
db.pragma("wal_autocheckpoint = 4000")
// The tables and indexes a turn writes, as src/state/sqlite/migrations/latest.ts creates them.
db.exec(`
  CREATE TABLE IF NOT EXISTS chat_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, message TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS chat_history_by_session ON chat_history (session_id, id);
  CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY NOT NULL, session_key TEXT, response TEXT NOT NULL, input_items TEXT NOT NULL,
    created_at INTEGER NOT NULL, user_key TEXT, status TEXT NOT NULL DEFAULT '');
  CREATE INDEX IF NOT EXISTS responses_by_created_at ON responses (created_at);
  CREATE INDEX IF NOT EXISTS responses_by_status ON responses (status, created_at);`)

const checkpointer = new Worker(
  `const Database = require(${JSON.stringify(require.resolve("better-sqlite3"))})
  const db = new Database(${JSON.stringify(file)})
  db.pragma("synchronous = NORMAL")
  db.pragma("busy_timeout = 100")
  const passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)")
  const restart = db.prepare("PRAGMA wal_checkpoint(RESTART)")
  setInterval(() => {
    if (passive.get().log < 1000) return
    try { restart.get() } catch { /* busy: the next tick */ }
  }, ${checkpointEveryMs})`,
  { eval: true }
)
checkpointer.unref()

const insertHistory = db.prepare("INSERT INTO chat_history (session_id, message) VALUES (?, ?)")
const replaceResponse = db.prepare(
  "INSERT OR REPLACE INTO responses (id, session_key, user_key, response, input_items, status, created_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
const begin = db.prepare("BEGIN")
const commit = db.prepare("COMMIT")

const pool = Buffer.alloc(4096)
let used = pool.length
const randomHex = (bytes) => {
  if (used + bytes > pool.length) {
    Crypto.randomFillSync(pool)
    used = 0
  }
  used += bytes
  return pool.toString("hex", used - bytes, used)
}

let queue = []
const flush = () => {
  const batch = queue
  queue = []
  begin.run()
  for (const turn of batch) {
    insertHistory.run(turn.session, turn.userMessage)
    insertHistory.run(turn.session, turn.replyMessage)
    replaceResponse.run(turn.id, turn.session, null, turn.text, turn.inputItems, "completed", turn.createdAt)
  }
  commit.run()
  for (const turn of batch) turn.answer()
}
const store = (turn) => {
  if (queue.length === 0) setImmediate(flush)
  queue.push(turn)
}

const sendJson = (response, status, text) => {
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  response.end(text)
}
const invalid = (response, message) =>
  sendJson(response, 400, JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code: null } }))

const resource = (id, model, createdAt, completedAt, status, output, usage) => ({
  id,
  object: "response",
  created_at: createdAt,
  completed_at: completedAt,
  status,
  incomplete_details: null,
  model,
  previous_response_id: null,
  instructions: null,
  output,
  error: null,
  tools: [],
  tool_choice: "auto",
  truncation: "disabled",
  parallel_tool_calls: true,
  text: { format: { type: "text" } },
  top_p: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  top_logprobs: 0,
  temperature: 1,
  reasoning: null,
  usage,
  max_output_tokens: null,
  max_tool_calls: null,
  store: true,
  background: false,
  service_tier: "default",
  metadata: {},
  safety_identifier: null,
  prompt_cache_key: null,
  user: null
})

const event = (payload) => `event: ${payload.type}\ndata: ${JSON.stringify(payload)}\n\n`

/** The turn; `done` runs once its reply is sent (after the commit). */
const turn = (response, body, done) => {
  const now = Date.now()
  const seconds = Math.floor(now / 1000)
  const id = `resp_${now.toString(16).padStart(12, "0")}${randomHex(20)}`
  const itemId = `msg_${id.slice(5)}_0`
  const session = `responses:${id}`
  const reply = `You said: "${body.input}". This is turn 1 of this conversation, over the responses channel.`
  const words = reply.split(" ")
  const usage = {
    input_tokens: body.input.split(" ").length,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: words.length,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: body.input.split(" ").length + words.length
  }
  const part = { type: "output_text", text: reply, annotations: [], logprobs: [] }
  const item = { type: "message", id: itemId, status: "completed", role: "assistant", content: [part] }
  const final = resource(id, body.model, seconds, seconds, "completed", [item], usage)
  const text = JSON.stringify(final)
  const stored = {
    id,
    session,
    text,
    createdAt: now,
    userMessage: JSON.stringify({
      role: "user",
      contents: [{ _tag: "text", text: body.input }],
      hosting: { channel: "responses" }
    }),
    replyMessage: JSON.stringify({
      role: "assistant",
      contents: [{ _tag: "text", text: reply }],
      id: "msg_default_0",
      authorName: "default-agent"
    }),
    inputItems: JSON.stringify([{
      id: `msg_${id.slice(5)}_in0`,
      type: "message",
      role: "user",
      status: "completed",
      content: [{ type: "input_text", text: body.input }]
    }]),
    answer: undefined
  }
  if (body.stream !== true) {
    stored.answer = () => {
      sendJson(response, 200, text)
      done()
    }
    return store(stored)
  }
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  const started = resource(id, body.model, seconds, null, "in_progress", [], null)
  let sequence = 0
  let out = event({ type: "response.created", sequence_number: ++sequence, response: started }) +
    event({ type: "response.in_progress", sequence_number: ++sequence, response: started })
  response.write(out)
  const at = { item_id: itemId, output_index: 0, content_index: 0 }
  out = event({
    type: "response.output_item.added",
    sequence_number: ++sequence,
    output_index: 0,
    item: { ...item, status: "in_progress", content: [] }
  }) + event({
    type: "response.content_part.added",
    sequence_number: ++sequence,
    ...at,
    part: { ...part, text: "" }
  })
  for (let i = 0; i < words.length; i++) {
    const delta = i === 0 ? words[i] : ` ${words[i]}`
    out += event({ type: "response.output_text.delta", sequence_number: ++sequence, ...at, delta, logprobs: [] })
  }
  out += event({ type: "response.output_text.done", sequence_number: ++sequence, ...at, text: reply, logprobs: [] }) +
    event({ type: "response.content_part.done", sequence_number: ++sequence, ...at, part }) +
    event({ type: "response.output_item.done", sequence_number: ++sequence, output_index: 0, item })
  response.write(out)
  stored.answer = () => {
    response.end(event({ type: "response.completed", sequence_number: ++sequence, response: final }))
    done()
  }
  store(stored)
}

const problem = (body) =>
  typeof body !== "object" || body === null ?
    "the body must be a JSON object" :
    typeof body.model !== "string" ?
    "model: a string is required" :
    typeof body.input !== "string" ?
    "input: a string is required" :
    undefined

const bodyText = (chunks) => chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks).toString("utf8")

const plainHandler = (request, response) => {
  const chunks = []
  request.on("data", (chunk) => chunks.push(chunk))
  request.on("end", () => {
    let body
    try {
      body = JSON.parse(bodyText(chunks))
    } catch (error) {
      return invalid(response, String(error))
    }
    const wrong = problem(body)
    if (wrong !== undefined) return invalid(response, wrong)
    turn(response, body, () => {})
  })
}

const effectHandler = () => {
  const { Effect, Runtime } = require("effect")
  const runFork = Runtime.runFork(Runtime.defaultRuntime)
  const readBody = (request) =>
    Effect.async((resume) => {
      const chunks = []
      request.on("data", (chunk) => chunks.push(chunk))
      request.on("end", () => resume(Effect.succeed(bodyText(chunks))))
    })
  const handle = (request, response) =>
    Effect.gen(function*() {
      const text = yield* readBody(request)
      const parsed = yield* Effect.either(Effect.try({ try: () => JSON.parse(text), catch: String }))
      if (parsed._tag === "Left") return invalid(response, parsed.left)
      const wrong = problem(parsed.right)
      if (wrong !== undefined) return invalid(response, wrong)
      yield* Effect.async((resume) => turn(response, parsed.right, () => resume(Effect.void)))
    })
  return (request, response) => runFork(handle(request, response))
}

const handler = process.env.FLOOR_EFFECT === "1" ? effectHandler() : plainHandler

const server = Http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/readiness") return sendJson(response, 200, "{\"status\":\"ok\"}")
  if (request.method !== "POST" || request.url !== "/v1/responses") {
    return sendJson(response, 404, JSON.stringify({ error: { message: "no route", type: "not_found" } }))
  }
  handler(request, response)
})
server.keepAliveTimeout = 5_000
server.listen(port, host)
process.on("SIGTERM", () => server.close(() => process.exit(0)))
