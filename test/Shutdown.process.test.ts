/**
 * SIGTERM against the real server (test/fixtures/shutdownHost.ts: `npm start`'s composition with a slow target):
 * in-flight turns get AGENT_HOST_SHUTDOWN_GRACE, then every open stream ends with its terminal event, a blocking
 * request gets a JSON 503, a stored response is kept as `incomplete` with its partial output, and the user's
 * message stays in the web chat history; a turn that finishes within the grace completes normally.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as ServerProcess from "./utils/ServerProcess.js"
import { collect } from "./utils/SseFrames.js"

const entry = "test/fixtures/shutdownHost.ts"

const waitFor = (what: string, done: () => boolean, limitMillis = 15_000) =>
  Effect.promise(async () => {
    const deadline = performance.now() + limitMillis
    while (!done()) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "agent-host-shutdown-"))

const outputText = (response: { output: ReadonlyArray<{ type: string; content?: ReadonlyArray<{ text: string }> }> }) =>
  response.output.flatMap((item) => item.type === "message" ? (item.content ?? []).map((c) => c.text) : []).join("")

describe("SIGTERM (the real server as a process)", () => {
  it.scopedLive(
    "stops accepting, gives turns the grace, then ends every stream with a terminal event and keeps what it has",
    () =>
      Effect.gen(function*() {
        const dir = tempDir()
        const env = { AGENT_HOST_STATE_DIR: dir, AGENT_HOST_SHUTDOWN_GRACE: "1 second", LOG_LEVEL: "debug" }
        const server = yield* ServerProcess.start(env, undefined, entry)
        const slow = "words:200 delay:100"

        // A blocking request, then three streams: Responses, Invocations, web chat.
        const blocking = post(`${server.url}/v1/responses`, { input: slow })
        yield* waitFor("the blocking turn to start", () => /channel request.*stream=false/.test(server.output()))
        const responses = collect(
          yield* Effect.promise(() => post(`${server.url}/v1/responses`, { input: slow, stream: true }))
        )
        const invocations = collect(
          yield* Effect.promise(() => post(`${server.url}/invocations`, { message: slow, stream: true }))
        )
        const user = "shutdown-user-1"
        const session = "shutdown-session-1"
        const webchat = collect(
          yield* Effect.promise(() => post(`${server.url}/webchat/messages`, { user, session, message: slow }))
        )
        yield* waitFor(
          "the first words of every stream",
          () =>
            responses.frames.some((f) => f.event === "response.output_text.delta") &&
            invocations.frames.length > 0 &&
            webchat.frames.some((f) => f.event === "delta")
        )

        const signalledAt = performance.now()
        const deltasAtSignal = responses.frames.filter((f) => f.event === "response.output_text.delta").length
        server.process.kill("SIGTERM")

        // Readiness turns unready at once (the listener closes: a new connection is refused), while the turns are
        // still in their grace.
        yield* Effect.promise(async () => {
          for (let i = 0; i < 100; i++) {
            const status = await fetch(`${server.url}/readiness`).then((r) => r.status, () => "refused")
            if (status !== 200) return
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
          throw new Error("readiness stayed ready after SIGTERM")
        })
        assert.isBelow(performance.now() - signalledAt, 900, "unready before the grace is over")

        // Responses: more words during the grace, then response.incomplete, then the stream closes.
        assert.strictEqual(yield* Effect.promise(() => responses.ended), "closed")
        const last = responses.frames[responses.frames.length - 1]!
        assert.strictEqual(last.event, "response.incomplete")
        const incomplete = JSON.parse(last.data).response
        assert.strictEqual(incomplete.status, "incomplete")
        assert.deepStrictEqual(incomplete.incomplete_details, { reason: "server_shutdown" })
        const deltas = responses.frames.filter((f) => f.event === "response.output_text.delta")
        assert.isAbove(deltas.length, deltasAtSignal, "the turn kept streaming during the grace")
        const partial = deltas.map((f) => JSON.parse(f.data).delta as string).join("")
        assert.strictEqual(outputText(incomplete), partial)
        assert.isTrue(partial.startsWith(" w1 w2"))

        // Invocations: an `event: error` frame ends the stream.
        assert.strictEqual(yield* Effect.promise(() => invocations.ended), "closed")
        const invocationsLast = invocations.frames[invocations.frames.length - 1]!
        assert.strictEqual(invocationsLast.event, "error")
        assert.include(invocationsLast.data, "shutting down")

        // Web chat: its error frame.
        assert.strictEqual(yield* Effect.promise(() => webchat.ended), "closed")
        const webchatLast = webchat.frames[webchat.frames.length - 1]!
        assert.strictEqual(webchatLast.event, "error")
        assert.strictEqual(JSON.parse(webchatLast.data).error.type, "TurnCancelled")

        // The blocking request: a JSON 503 with retry-after instead of a dropped connection.
        const answer = yield* Effect.promise(() => blocking)
        assert.strictEqual(answer.status, 503)
        assert.isNotNull(answer.headers.get("retry-after"))
        const error = yield* Effect.promise(() => answer.json())
        assert.strictEqual(error.error.code, "server_shutting_down")

        // The process exits within the grace plus a small margin, cleanly.
        const code = yield* server.exited
        const tookMillis = performance.now() - signalledAt
        assert.strictEqual(code, 0)
        assert.isAtLeast(tookMillis, 900, "the grace was given")
        assert.isBelow(tookMillis, 1_000 + 4_000, `exited ${Math.round(tookMillis)} ms after SIGTERM`)

        // After a restart on the same state: the streamed response is stored, incomplete, with its partial output;
        // the web chat user's message is in the history.
        const again = yield* ServerProcess.start(env, undefined, entry)
        const stored = yield* Effect.promise(() =>
          fetch(`${again.url}/v1/responses/${incomplete.id}`).then((r) => r.json())
        )
        assert.strictEqual(stored.status, "incomplete")
        assert.deepStrictEqual(stored.incomplete_details, { reason: "server_shutdown" })
        assert.strictEqual(outputText(stored), partial)
        const history = yield* Effect.promise(() =>
          fetch(`${again.url}/webchat/history?user=${user}&session=${session}`).then((r) => r.json())
        )
        assert.deepStrictEqual(history.messages[0], { role: "user", text: slow })
      }),
    120_000
  )

  it.scopedLive(
    "a turn that finishes within the grace completes normally, and the process exits early",
    () =>
      Effect.gen(function*() {
        const env = { AGENT_HOST_STATE: "memory", AGENT_HOST_SHUTDOWN_GRACE: "30 seconds" }
        const server = yield* ServerProcess.start(env, undefined, entry)
        const stream = collect(
          yield* Effect.promise(() => post(`${server.url}/v1/responses`, { input: "words:40 delay:100", stream: true }))
        )
        yield* waitFor("the first word", () => stream.frames.some((f) => f.event === "response.output_text.delta"))
        const signalledAt = performance.now()
        server.process.kill("SIGTERM")
        assert.strictEqual(yield* Effect.promise(() => stream.ended), "closed")
        const last = stream.frames[stream.frames.length - 1]!
        assert.strictEqual(last.event, "response.completed")
        const completed = JSON.parse(last.data).response
        // A 4 s turn: longer than any fixed close timeout, well within the grace.
        assert.strictEqual(outputText(completed), Array.from({ length: 40 }, (_, i) => ` w${i + 1}`).join(""))
        assert.strictEqual(yield* server.exited, 0)
        // Well before the 30 s grace: shutdown goes on as soon as no turn is left.
        assert.isBelow(performance.now() - signalledAt, 10_000)
      }),
    120_000
  )
})
