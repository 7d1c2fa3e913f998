/**
 * The runner's group commit is durable: every task whose `schedule` returned, and every phase whose
 * `completePhase` returned, is in the state database after kill -9 of the process (`test/fixtures/
 * taskRunnerCrash.ts` kills itself in the tick it saw the acknowledgements, with more writes queued).
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as ServerProcess from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

const TASKS = 2_000
const CONCURRENCY = 32

interface Row {
  readonly id: string
  readonly idempotency_key: string
  readonly phase: number
}

/** Runs the fixture in `mode` until it kills itself; answers what it acknowledged and the rows stored. */
const crash = (mode: "schedule" | "phase") =>
  Effect.gen(function*() {
    const directory = Path.join(yield* TempDir.make(), "state")
    const child = yield* Effect.acquireRelease(
      ServerProcess.spawnServer(
        {
          AGENT_HOST_STATE_DIR: directory,
          MODE: mode,
          TASKS: String(TASKS),
          AGENT_HOST_TASK_CONCURRENCY: String(CONCURRENCY)
        },
        undefined,
        "test/fixtures/taskRunnerCrash.ts"
      ),
      (child) => child.kill("SIGKILL")
    )
    yield* child.exited
    assert.strictEqual(child.process.signalCode, "SIGKILL", child.output())
    const acked = JSON.parse(Fs.readFileSync(Path.join(directory, "acked.json"), "utf8")) as {
      readonly scheduled?: ReadonlyArray<readonly [string, string]>
      readonly phased?: ReadonlyArray<string>
    }
    const rows = yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      return yield* sql<Row>`SELECT id, idempotency_key, phase FROM agent_host_tasks`
    }).pipe(Effect.provide(SqliteClient.layer({ filename: Path.join(directory, "state.db") })), Effect.orDie)
    return { acked, stored: new Map(rows.map((row) => [row.id, row])) }
  })

describe("TaskRunner across kill -9 (process)", () => {
  it.scopedLive("every task whose schedule returned is stored", () =>
    Effect.gen(function*() {
      const { acked, stored } = yield* crash("schedule")
      const scheduled = acked.scheduled ?? []
      assert.strictEqual(scheduled.length, TASKS)
      const missing = scheduled.filter(([id]) => !stored.has(id))
      assert.deepStrictEqual(missing.slice(0, 5), [], `${missing.length} acknowledged tasks are missing`)
      for (const [id, key] of scheduled) assert.strictEqual(stored.get(id)!.idempotency_key, key)
    }), { timeout: 120_000 })

  it.scopedLive("every phase whose completePhase returned is stored", () =>
    Effect.gen(function*() {
      const { acked, stored } = yield* crash("phase")
      const phased = acked.phased ?? []
      assert.strictEqual(phased.length, CONCURRENCY)
      for (const id of phased) assert.strictEqual(stored.get(id)?.phase, 1, `phase of ${id}`)
    }), { timeout: 120_000 })
})
