/**
 * Group commit is durable: a write the state store acknowledged survives kill -9 of the process that made it, and
 * so does every write queued before it (a stored response's acknowledgement covers the reply appended before it)
 * (`test/fixtures/stateWriterCrash.ts`, which kills itself in the tick it saw the acknowledgements, so a write
 * acknowledged before its commit would be missing).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as Path from "node:path"
import { assistantMessage, userMessage } from "../src/domain/Message.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import { StateStore } from "../src/state/StateStore.js"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

describe("StateWriter across kill -9 (process)", () => {
  it.scopedLive("every write acknowledged before the kill is there after it", () =>
    Effect.gen(function*() {
      const directory = Path.join(yield* TempDir.make(), "state")
      const child = yield* Effect.acquireRelease(
        ServerProcess.spawnServer({ AGENT_HOST_STATE_DIR: directory }, undefined, "test/fixtures/stateWriterCrash.ts"),
        (child) => child.kill("SIGKILL")
      )
      yield* child.exited
      assert.strictEqual(child.process.signalCode, "SIGKILL", child.output())
      assert.include(child.output(), "acked")

      yield* Effect.gen(function*() {
        const store = yield* StateStore
        for (let i = 0; i < 100; i++) {
          assert.deepStrictEqual(yield* store.loadHistory(`s${i}`), [
            userMessage(`input s${i}`),
            assistantMessage(`reply s${i}`)
          ])
          // written as a Responses turn writes a stored response with its reply (one wait, for the response)
          assert.deepStrictEqual(yield* store.loadHistory(`r${i}`), [
            userMessage(`input r${i}`),
            assistantMessage(`reply r${i}`)
          ])
          const stored = yield* store.getResponse(`resp_r${i}`)
          assert.deepStrictEqual(
            Option.map(stored, (s) => s.response),
            Option.some({ id: `resp_r${i}`, status: "completed" })
          )
        }
      }).pipe(Effect.provide(SqliteStateStore.layer({ directory })), Effect.scoped, Effect.orDie)
    }), { timeout: 120_000 })
})
