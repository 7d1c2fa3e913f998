/**
 * A scripted OpenAI-compatible upstream on 127.0.0.1 speaking the Responses API (`POST /v1/responses`, JSON
 * or SSE), for testing the OpenAI-backed agent. Each request is recorded; `script` decides the reply.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export type Reply =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "call"; readonly name: string; readonly arguments: string; readonly callId: string }
  | { readonly kind: "error"; readonly status: number; readonly message: string }

export interface FakeOpenAi {
  readonly url: string
  readonly requests: Array<any>
}

const usage = {
  input_tokens: 11,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: 7,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 18
}

const responseObject = (id: string, model: string, status: string, output: Array<unknown>) => ({
  id,
  object: "response",
  created_at: 1_700_000_000,
  status,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model,
  output,
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  store: true,
  temperature: 1,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_p: 1,
  truncation: "disabled",
  usage: status === "completed" ? usage : null,
  user: null,
  metadata: {}
})

const itemFor = (reply: Reply, n: number) =>
  reply.kind === "call" ?
    {
      type: "function_call",
      id: `fc_${n}`,
      call_id: reply.callId,
      name: reply.name,
      arguments: reply.arguments,
      status: "completed"
    } :
    {
      type: "message",
      id: `msg_${n}`,
      status: "completed",
      role: "assistant",
      content: [{ type: "output_text", text: reply.kind === "text" ? reply.text : "", annotations: [], logprobs: [] }]
    }

export const make = (script: (body: any, n: number) => Reply) =>
  Effect.acquireRelease(
    Effect.async<{ server: Http.Server; fake: FakeOpenAi }>((resume) => {
      const requests: Array<any> = []
      const server = Http.createServer((req, res) => {
        let raw = ""
        req.on("data", (c) => (raw += c))
        req.on("end", () => {
          const body = JSON.parse(raw || "{}")
          requests.push({ path: req.url, headers: req.headers, body })
          const n = requests.length
          if (req.url !== "/v1/responses") {
            res.writeHead(404, { "content-type": "application/json" })
            res.end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }))
            return
          }
          const reply = script(body, n)
          if (reply.kind === "error") {
            res.writeHead(reply.status, { "content-type": "application/json" })
            res.end(
              JSON.stringify({ error: { message: reply.message, type: "server_error", param: null, code: null } })
            )
            return
          }
          const id = `resp_${n}`
          const item = itemFor(reply, n)
          if (body.stream !== true) {
            res.writeHead(200, { "content-type": "application/json" })
            res.end(JSON.stringify(responseObject(id, body.model, "completed", [item])))
            return
          }
          res.writeHead(200, { "content-type": "text/event-stream" })
          let seq = 0
          const send = (event: Record<string, unknown>) =>
            res.write(`event: ${event.type}\ndata: ${JSON.stringify({ ...event, sequence_number: seq++ })}\n\n`)
          send({ type: "response.created", response: responseObject(id, body.model, "in_progress", []) })
          if (reply.kind === "call") {
            send({
              type: "response.output_item.added",
              output_index: 0,
              item: { ...item, status: "in_progress", arguments: "" }
            })
            send({
              type: "response.function_call_arguments.delta",
              item_id: item.id,
              output_index: 0,
              delta: reply.arguments
            })
            send({
              type: "response.function_call_arguments.done",
              item_id: item.id,
              output_index: 0,
              arguments: reply.arguments
            })
            send({ type: "response.output_item.done", output_index: 0, item })
          } else {
            const started = { ...item, status: "in_progress", content: [] }
            send({ type: "response.output_item.added", output_index: 0, item: started })
            send({
              type: "response.content_part.added",
              item_id: item.id,
              output_index: 0,
              content_index: 0,
              part: { type: "output_text", text: "", annotations: [] }
            })
            for (const word of reply.text.match(/\s*\S+/g) ?? []) {
              send({
                type: "response.output_text.delta",
                item_id: item.id,
                output_index: 0,
                content_index: 0,
                delta: word,
                logprobs: []
              })
            }
            send({
              type: "response.output_text.done",
              item_id: item.id,
              output_index: 0,
              content_index: 0,
              text: reply.text,
              logprobs: []
            })
            send({ type: "response.output_item.done", output_index: 0, item })
          }
          send({ type: "response.completed", response: responseObject(id, body.model, "completed", [item]) })
          res.end()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({ server, fake: { url: `http://127.0.0.1:${port}/v1`, requests } }))
      })
    }),
    ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map(({ fake }) => fake))
