/**
 * A blocking Responses request stores its response with the turn's reply (`RunExtras.withReply`): the reply's
 * history append is queued, the stored response joins it and is the one write the request waits for, so both are
 * committed (on SQLite: visible to another connection) before the 200, in one commit rather than two.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Path from "node:path"
import * as Responses from "../src/channels/Responses/index.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as NativeSqlite from "../src/state/sqlite/NativeSqlite.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as RecordingStore from "./utils/RecordingStore.js"
import * as TempDir from "./utils/TempDir.js"
import * as TestHost from "./utils/TestHost.js"

type Write = RecordingStore.Write

const recording = RecordingStore.layer

const create = (url: string, body: Record<string, unknown>) =>
  Effect.promise(() =>
    fetch(`${url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(async (r) => ({ status: r.status, text: await r.text() }))
  )

describe("Responses: the stored response commits with the reply", () => {
  it.scoped("a stored response is the one write waited for; with store: false the reply's append is", () =>
    Effect.gen(function*() {
      const writes: Array<Write> = []
      const context = yield* Layer.build(
        TestHost.layer({ channels: [Responses.make()], store: recording(writes) })
      )
      const host = yield* Effect.provide(AgentHost, context)

      const stored = yield* create(host.url, { model: "m", input: "hi" })
      assert.strictEqual(stored.status, 200, stored.text)
      assert.deepStrictEqual(writes.splice(0), ["append (queued)", "append (queued)", "response"])

      const unstored = yield* create(host.url, { model: "m", input: "hi", store: false })
      assert.strictEqual(unstored.status, 200, unstored.text)
      assert.deepStrictEqual(writes.splice(0), ["append (queued)", "append"])
    }))

  it.scoped("on SQLite, the response and the reply are committed when the 200 arrives", () =>
    Effect.gen(function*() {
      const directory = Path.join(yield* TempDir.make(), "state")
      const context = yield* Layer.build(
        TestHost.layer({
          channels: [Responses.make()],
          store: Layer.orDie(SqliteStateStore.layer({ directory }))
        })
      )
      const host = yield* Effect.provide(AgentHost, context)
      const created = yield* create(host.url, { model: "m", input: "hi" })
      assert.strictEqual(created.status, 200, created.text)
      const id = (JSON.parse(created.text) as { readonly id: string }).id

      // Another connection sees only committed rows.
      const db = NativeSqlite.open(Path.join(directory, "state.db"), { readonly: true })
      try {
        const row = db.prepare("SELECT response FROM responses WHERE id = ?").get(id) as { readonly response: string }
        assert.deepStrictEqual(JSON.parse(row.response), JSON.parse(created.text))
        const history = db.prepare("SELECT message FROM chat_history WHERE session_id = ? ORDER BY id")
          .all(`responses:${id}`) as ReadonlyArray<{ readonly message: string }>
        assert.deepStrictEqual(history.map((h) => (JSON.parse(h.message) as { readonly role: string }).role), [
          "user",
          "assistant"
        ])
      } finally {
        db.close()
      }
    }))
})
