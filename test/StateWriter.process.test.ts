/**
 * Group commit is durable: a write the state store acknowledged survives kill -9 of the process that made it
 * (`test/fixtures/stateWriterCrash.ts`, which kills itself in the tick it saw the acknowledgements, so a write
 * acknowledged before its commit would be missing).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
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
        }
      }).pipe(Effect.provide(SqliteStateStore.layer({ directory })), Effect.scoped, Effect.orDie)
    }), { timeout: 120_000 })
})
