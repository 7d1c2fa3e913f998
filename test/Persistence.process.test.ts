/**
 * Persistence of the real server (`src/main.ts` as a child process, zero config except the state dir):
 * a conversation survives kill -9; a second process on the same state dir exits non-zero naming the dir and the
 * owner's pid, and a new one starts once the owner is killed; a corrupt history row is quarantined and logged
 * while the service stays up.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

const say = (url: string, message: string) =>
  Effect.promise(() =>
    fetch(`${url}/invocations`, {
      method: "POST",
      body: JSON.stringify({ message, session_id: "conversation-1" }),
      headers: { "content-type": "application/json" }
    }).then(async (r) => ({ status: r.status, body: await r.text() }))
  ).pipe(Effect.map((r) => {
    assert.strictEqual(r.status, 200, r.body)
    return JSON.parse(r.body).response as string
  }))

const startTimeoutMs = 90_000

describe("Persistence (process)", () => {
  it.scopedLive(
    "history survives kill -9; one owner per state dir; corrupt rows are quarantined",
    () =>
      Effect.gen(function*() {
        const stateDir = Path.join(yield* TempDir.make(), "state")
        const env = { AGENT_HOST_STATE_DIR: stateDir }
        const start = Effect.flatMap(ServerProcess.spawnServer(env), (s) => ServerProcess.awaitReady(s, startTimeoutMs))

        // 1. a conversation, then kill -9 mid-life
        const first = yield* start
        assert.include(yield* say(first.url, "one"), "turn 1")
        assert.include(yield* say(first.url, "two"), "turn 2")
        yield* first.kill("SIGKILL")

        // 2. restart on the same dir: the conversation goes on
        const second = yield* Effect.acquireRelease(start, (s) => s.kill("SIGKILL"))
        assert.include(yield* say(second.url, "three"), "turn 3")

        // 3. a second process on the same dir fails fast, naming the dir and the owner
        const intruder = yield* ServerProcess.spawnServer(env)
        const code = yield* intruder.exited.pipe(Effect.timeout("90 seconds"))
        assert.notStrictEqual(code, 0)
        assert.notStrictEqual(code, null)
        assert.include(intruder.output(), stateDir)
        assert.include(intruder.output(), `pid ${second.process.pid}`)
        // the owner is unaffected
        assert.include(yield* say(second.url, "four"), "turn 4")
        yield* second.kill("SIGKILL")

        // 4. corrupt one stored message behind the server's back, then start again (the stale lock does not block)
        const db = NativeSqlite.open(Path.join(stateDir, "state.db"))
        const changed = db.prepare(
          "UPDATE chat_history SET message = '{garbage' WHERE id = (SELECT MIN(id) FROM chat_history)"
        ).run()
        assert.strictEqual(changed.changes, 1)
        db.close()
        const third = yield* Effect.acquireRelease(start, (s) => s.kill("SIGKILL"))
        // the first user message is gone (quarantined), the other three remain: this is the 4th user turn
        assert.include(yield* say(third.url, "five"), "turn 4")
        assert.include(third.output(), "quarantined")
        assert.include(third.output(), "chat_history")
        const check = NativeSqlite.open(Path.join(stateDir, "state.db"), { readonly: true })
        const rows = check.prepare("SELECT source_table AS t, raw FROM quarantine").all()
        check.close()
        assert.deepStrictEqual(rows, [{ t: "chat_history", raw: "{garbage" }])
        assert.include(yield* say(third.url, "six"), "turn 5")
      }),
    { timeout: 420_000 }
  )
})
