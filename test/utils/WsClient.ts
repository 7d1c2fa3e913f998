/**
 * A WebSocket client for Responses WebSocket mode tests: sends `response.create` events and collects the JSON
 * frames of each turn until its terminal event or an `error` event.
 */
import { Data, Effect } from "effect"
import WebSocket from "ws"

/** The upgrade failed: `message` starts with the HTTP status when the server answered one. */
export class ConnectFailed extends Data.TaggedError("ConnectFailed")<{ readonly message: string }> {}

export type Frame = { readonly type: string } & Record<string, unknown>

export interface Turn {
  readonly frames: ReadonlyArray<Frame>
  /** The last frame: a terminal event (`response.completed`, ...) or an `error` event. */
  readonly last: Frame
  /** The terminal event's response, if the turn ended with one. */
  readonly response: (Record<string, unknown> & { readonly id: string; readonly status: string }) | undefined
}

const terminal = new Set(["response.completed", "response.failed", "response.incomplete", "error"])

export interface Client {
  readonly socket: WebSocket
  /** Sends `event` (a `response.create`) and collects its frames. */
  readonly turn: (event: Record<string, unknown>) => Effect.Effect<Turn>
  /** Sends raw data and waits for one frame. */
  readonly raw: (data: string | Buffer, binary?: boolean) => Effect.Effect<Frame>
  /** Resolves with the close code when the socket closes. */
  readonly closed: Effect.Effect<number>
}

/** Opens a socket to `<url>/v1/responses`; closed when the scope closes. */
export const connect = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.async<Client, ConnectFailed>((resume) => {
      const socket = new WebSocket(`${url.replace(/^http/, "ws")}/v1/responses`, { headers })
      const queue: Array<Frame> = []
      let waiter: ((frame: Frame) => void) | undefined
      let code: number | undefined
      const closeWaiters: Array<(code: number) => void> = []
      socket.on("message", (data) => {
        const frame = JSON.parse(String(data)) as Frame
        if (waiter !== undefined) {
          const w = waiter
          waiter = undefined
          w(frame)
        } else queue.push(frame)
      })
      socket.on("close", (c) => {
        code = c
        for (const w of closeWaiters.splice(0)) w(c)
      })
      const next = Effect.async<Frame>((resumeFrame) => {
        const queued = queue.shift()
        if (queued !== undefined) return resumeFrame(Effect.succeed(queued))
        waiter = (frame) => resumeFrame(Effect.succeed(frame))
      })
      const client: Client = {
        socket,
        turn: (event) =>
          Effect.gen(function*() {
            socket.send(JSON.stringify(event))
            const frames: Array<Frame> = []
            for (;;) {
              const frame = yield* next
              frames.push(frame)
              if (terminal.has(frame.type)) {
                const response = frame.type === "error" ? undefined : frame["response"] as Turn["response"]
                return { frames, last: frame, response }
              }
            }
          }),
        raw: (data, binary = false) => Effect.zipRight(Effect.sync(() => socket.send(data, { binary })), next),
        closed: Effect.async<number>((resumeClose) => {
          if (code !== undefined) return resumeClose(Effect.succeed(code))
          closeWaiters.push((c) => resumeClose(Effect.succeed(c)))
        })
      }
      socket.once("open", () => resume(Effect.succeed(client)))
      socket.once("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (chunk: Buffer) => (body += chunk.toString()))
        res.on("end", () => resume(Effect.fail(new ConnectFailed({ message: `${res.statusCode} ${body}` }))))
      })
      socket.once("error", (error) => resume(Effect.fail(new ConnectFailed({ message: error.message }))))
    }),
    (client) => Effect.sync(() => client.socket.terminate())
  )
