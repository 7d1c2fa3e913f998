// The baseline: raw node:http doing the same work as the host's routes (read and parse a small JSON body,
// answer JSON; or answer a 50-event SSE stream written at once). Every host figure is a ratio to this server,
// measured in the same run. Plain JavaScript so its cold start is node's own.
import * as Http from "node:http"

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? "127.0.0.1"
const EVENTS = 50

const readBody = (request, done) => {
  const chunks = []
  request.on("data", (chunk) => chunks.push(chunk))
  request.on(
    "end",
    () => done(chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks).toString("utf8"))
  )
}

const sendJson = (response, status, body) => {
  const text = JSON.stringify(body)
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  response.end(text)
}

const server = Http.createServer((request, response) => {
  const url = request.url ?? "/"
  if (request.method === "GET" && url === "/readiness") return sendJson(response, 200, { status: "ok" })
  if (request.method !== "POST" || (url !== "/json" && url !== "/sse")) {
    return sendJson(response, 404, { error: { message: `no route for ${request.method} ${url}`, type: "not_found" } })
  }
  readBody(request, (text) => {
    let body
    try {
      body = JSON.parse(text)
    } catch (error) {
      return sendJson(response, 400, { error: { message: String(error), type: "invalid_json" } })
    }
    const message = typeof body?.message === "string" ? body.message : typeof body?.input === "string" ? body.input : ""
    if (url === "/json") {
      return sendJson(response, 200, {
        response: `You said: "${message}". This is turn 1 of this conversation, over the raw channel.`,
        session_id: null
      })
    }
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
    let out = ""
    for (let i = 0; i < EVENTS; i++) {
      const event = { type: "response.output_text.delta", sequence_number: i, item_id: "msg_0", delta: ` word${i}` }
      out += `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`
    }
    response.end(out)
  })
})
server.keepAliveTimeout = 5_000
server.listen(port, host)
process.on("SIGTERM", () => server.close(() => process.exit(0)))
