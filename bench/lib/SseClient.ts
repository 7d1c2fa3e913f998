/**
 * A small bounded SSE load client, run as its own (pinned) process:
 * `tsx bench/lib/SseClient.ts '<json options>'` prints one JSON line of results.
 * N connections each POST, read the stream to its end, and POST again, until the duration is over; it counts
 * events (frames ending in a blank line) and the time to the first body byte of every stream.
 */
import * as Http from "node:http"
import { median, percentile } from "./Stats.js"

export interface SseOptions {
  readonly url: string
  readonly body: string
  readonly connections: number
  readonly durationSeconds: number
}

export interface SseResult {
  readonly streams: number
  readonly events: number
  readonly eventsPerSecond: number
  readonly streamsPerSecond: number
  /** Time to first body byte, milliseconds. */
  readonly ttfbP50: number
  readonly ttfbP99: number
  readonly failures: number
  readonly firstFailure?: string
}

const countFrames = (text: string, previousEndedWithNewline: boolean): number => {
  let n = previousEndedWithNewline && text.startsWith("\n") ? 1 : 0
  let i = text.indexOf("\n\n")
  while (i !== -1) {
    n++
    i = text.indexOf("\n\n", i + 2)
  }
  return n
}

export const runSse = (options: SseOptions): Promise<SseResult> => {
  const url = new URL(options.url)
  if (url.hostname !== "127.0.0.1" && url.hostname !== "localhost") throw new Error("loopback only")
  const agent = new Http.Agent({ keepAlive: true, maxSockets: options.connections })
  const body = Buffer.from(options.body)
  const ttfbs: Array<number> = []
  let events = 0
  let streams = 0
  let failures = 0
  let firstFailure: string | undefined
  const started = performance.now()
  const deadline = started + options.durationSeconds * 1_000

  const fail = (why: string) => {
    failures++
    firstFailure ??= why
  }

  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now()
      let first = true
      let endedWithNewline = false
      const request = Http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: { "content-type": "application/json", "content-length": body.length, accept: "text/event-stream" },
          timeout: 10_000
        },
        (response) => {
          if (response.statusCode !== 200) fail(`status ${response.statusCode}`)
          response.setEncoding("utf8")
          response.on("data", (chunk: string) => {
            if (first) {
              first = false
              ttfbs.push(performance.now() - t0)
            }
            events += countFrames(chunk, endedWithNewline)
            endedWithNewline = chunk.endsWith("\n")
          })
          response.on("end", () => {
            streams++
            resolve()
          })
          response.on("error", (error) => {
            fail(error.message)
            resolve()
          })
        }
      )
      request.on("timeout", () => request.destroy(new Error("timeout")))
      request.on("error", (error) => {
        fail(error.message)
        resolve()
      })
      request.end(body)
    })

  const worker = async () => {
    while (performance.now() < deadline) await one()
  }
  return Promise.all(Array.from({ length: options.connections }, worker)).then(() => {
    const elapsed = (performance.now() - started) / 1_000
    agent.destroy()
    return {
      streams,
      events,
      eventsPerSecond: events / elapsed,
      streamsPerSecond: streams / elapsed,
      ttfbP50: median(ttfbs),
      ttfbP99: percentile(ttfbs, 99),
      failures,
      ...(firstFailure === undefined ? {} : { firstFailure })
    }
  })
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  const options = JSON.parse(process.argv[2] ?? "{}") as SseOptions
  if (options.connections > 1_000 || options.durationSeconds > 120) throw new Error("unbounded SSE run")
  void runSse(options).then((result) => {
    console.log(JSON.stringify(result))
  })
}
