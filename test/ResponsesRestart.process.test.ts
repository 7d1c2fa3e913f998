/**
 * Stored Responses across process death (`src/main.ts` and `test/fixtures/crashHost.ts` as child processes on a
 * state dir): a stored response survives a short prune interval and kill -9, is retrievable and chainable after
 * the restart; a background response killed mid-turn comes back `incomplete` (reason `server_restarted`) with
 * its partial output, and its `?stream=true` replay ends with `response.incomplete` instead of hanging up.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import { assertResponseResource, assertStreamEvent } from "./utils/OpenResponsesSchema.js"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

type Obj = Record<string, unknown>

const post = (url: string, body: Obj) =>
  Effect.promise(() =>
    fetch(`${url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000)
    }).then(async (r) => ({ status: r.status, body: await r.json() as Obj }))
  ).pipe(Effect.map((r) => {
    assert.strictEqual(r.status, 200, JSON.stringify(r.body))
    return r.body
  }))

const get = (url: string, id: string) =>
  Effect.promise(() =>
    fetch(`${url}/v1/responses/${id}`, { signal: AbortSignal.timeout(30_000) }).then(async (r) => ({
      status: r.status,
      body: await r.json() as Obj
    }))
  )

const textOf = (response: Obj) =>
  (response["output"] as ReadonlyArray<Obj>).flatMap((item) =>
    item["type"] === "message" ? (item["content"] as ReadonlyArray<Obj>).map((c) => String(c["text"] ?? "")) : []
  ).join("")

const parseSse = (text: string): Array<Obj> =>
  text.split("\n\n").flatMap((frame) => {
    const data = frame.split("\n").find((line) => line.startsWith("data: "))
    return data === undefined ? [] : [JSON.parse(data.slice(6)) as Obj]
  })

/** The whole `?stream=true` replay (after event `after`); fails unless it ends within 20 s. */
const replay = (url: string, id: string, after = 0) =>
  Effect.promise(() =>
    fetch(`${url}/v1/responses/${id}?stream=true&starting_after=${after}`, { signal: AbortSignal.timeout(20_000) })
      .then(async (r) => {
        assert.strictEqual(r.status, 200)
        return parseSse(await r.text())
      })
  )

/** Follows the live stream until `count` text deltas arrived, then lets go. */
const awaitDeltas = (url: string, id: string, count: number) =>
  Effect.promise(async () => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 30_000)
    try {
      const r = await fetch(`${url}/v1/responses/${id}?stream=true`, { signal: controller.signal })
      const reader = r.body!.getReader()
      const decoder = new TextDecoder()
      let text = ""
      for (let i = 0; i < 10_000; i++) {
        const { done, value } = await reader.read()
        if (done) break
        text += decoder.decode(value, { stream: true })
        const deltas = parseSse(text.slice(0, text.lastIndexOf("\n\n") + 2))
          .filter((e) => e["type"] === "response.output_text.delta")
        if (deltas.length >= count) return deltas.length
      }
      throw new Error(`the stream ended before ${count} deltas`)
    } finally {
      clearTimeout(timer)
      controller.abort()
    }
  })

const sleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

describe("Responses across a restart (process)", () => {
  it.scopedLive(
    "a stored response survives prune runs and kill -9; after the restart it is retrievable and chainable",
    () =>
      Effect.gen(function*() {
        const stateDir = Path.join(yield* TempDir.make(), "state")
        const env = { AGENT_HOST_STATE_DIR: stateDir, AGENT_HOST_PRUNE_INTERVAL: "1 second" }
        const start = Effect.acquireRelease(
          Effect.flatMap(ServerProcess.spawnServer(env), (s) => ServerProcess.awaitReady(s)),
          (s) => s.kill("SIGKILL")
        )

        const first = yield* start
        const created = yield* post(first.url, { input: "hello there" })
        const id = created["id"] as string
        assert.strictEqual(created["status"], "completed")
        // several prune runs (the first at startup, then every second): it is fresh, so it stays
        yield* sleep(3_500)
        assert.strictEqual((yield* get(first.url, id)).status, 200, "still there after a few prune intervals")
        assert.notInclude(first.output(), "pruned expired records")
        yield* first.kill("SIGKILL")

        const second = yield* start
        const again = yield* get(second.url, id)
        assert.strictEqual(again.status, 200, "retrievable after kill -9 and a restart")
        assertResponseResource(again.body)
        assert.deepStrictEqual(again.body, created)
        const next = yield* post(second.url, { input: "and now?", previous_response_id: id })
        assert.include(textOf(next), "turn 2", "the agent saw the earlier turn")
        yield* sleep(3_500)
        assert.strictEqual((yield* get(second.url, id)).status, 200)
        assert.strictEqual((yield* get(second.url, next["id"] as string)).status, 200)
        assert.notInclude(second.output(), "pruned expired records")
      }),
    { timeout: 300_000 }
  )

  it.scopedLive(
    "a background response killed mid-turn comes back incomplete and its replay ends with a terminal event",
    () =>
      Effect.gen(function*() {
        const stateDir = Path.join(yield* TempDir.make(), "state")
        const env = { AGENT_HOST_STATE_DIR: stateDir }
        const start = Effect.acquireRelease(
          Effect.flatMap(
            ServerProcess.spawnServer(env, undefined, "test/fixtures/crashHost.ts"),
            (s) => ServerProcess.awaitReady(s)
          ),
          (s) => s.kill("SIGKILL")
        )

        const first = yield* start
        const queued = yield* post(first.url, { input: "be slow please", background: true })
        const id = queued["id"] as string
        yield* awaitDeltas(first.url, id, 3)
        const midway = yield* get(first.url, id)
        assert.strictEqual(midway.body["status"], "in_progress")
        yield* first.kill("SIGKILL")

        const second = yield* start
        const after = yield* get(second.url, id)
        assert.strictEqual(after.status, 200)
        assertResponseResource(after.body)
        assert.strictEqual(after.body["status"], "incomplete", "not in_progress forever")
        assert.deepStrictEqual(after.body["incomplete_details"], { reason: "server_restarted" })
        assert.match(textOf(after.body), /^word1 word2 word3 /, "the partial output is kept")
        assert.include(second.output(), "ended responses a previous process left in progress")

        const events = yield* replay(second.url, id)
        for (const event of events) assertStreamEvent(event)
        for (let i = 1; i < events.length; i++) {
          assert.strictEqual(events[i]!["sequence_number"], (events[i - 1]!["sequence_number"] as number) + 1)
        }
        const last = events[events.length - 1]!
        assert.strictEqual(last["type"], "response.incomplete", "the replay ends with a terminal event")
        assert.deepStrictEqual(last["response"], after.body)
        assert.strictEqual(events.filter((e) => e["type"] === "response.output_item.done").length, 1)
        // a client that saw all but the end resumes from its cursor and gets the end
        const tail = yield* replay(second.url, id, last["sequence_number"] as number - 1)
        assert.deepStrictEqual(tail, [last])
        yield* second.kill("SIGKILL")

        // once ended, a further restart leaves it alone
        const third = yield* start
        assert.deepStrictEqual((yield* get(third.url, id)).body, after.body)
        assert.strictEqual((yield* replay(third.url, id)).length, events.length)
      }),
    { timeout: 300_000 }
  )
})
