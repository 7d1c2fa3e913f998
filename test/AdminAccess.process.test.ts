/**
 * The admin routes of `npm start` (issue 13, point 4): off on a default start, and behind the admin key (or the
 * API keys) when one is set.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ServerProcess from "./utils/ServerProcess.js"

const get = (url: string, key?: string) =>
  Effect.promise(async () => {
    const r = await fetch(url, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } })
    return { status: r.status, body: (await r.json()) as { error?: { type: string; message: string } } }
  })

describe("admin routes of npm start", () => {
  it.scopedLive("a default start does not serve them at all", () =>
    Effect.gen(function*() {
      const server = yield* ServerProcess.start({ AGENT_HOST_API_KEYS: "", AGENT_HOST_ADMIN_KEYS: "" })
      const listed = yield* get(`${server.url}/admin/tasks`)
      assert.strictEqual(listed.status, 404)
      assert.strictEqual(listed.body.error?.type, "not_found")
      assert.strictEqual((yield* get(`${server.url}/admin/tasks/x`, "guess")).status, 404)
      assert.include(server.output(), "admin routes are off")
    }), { timeout: 120_000 })

  it.scopedLive(
    "with AGENT_HOST_ADMIN_KEYS: 401 without or with a wrong key, 200 with the right one",
    () =>
      Effect.gen(function*() {
        const server = yield* ServerProcess.start({ AGENT_HOST_ADMIN_KEYS: "adm-1,adm-2", AGENT_HOST_API_KEYS: "" })
        assert.strictEqual((yield* get(`${server.url}/admin/tasks`)).status, 401)
        assert.strictEqual((yield* get(`${server.url}/admin/tasks`, "adm-3")).status, 401)
        const ok = yield* get(`${server.url}/admin/tasks`, "adm-2")
        assert.strictEqual(ok.status, 200)
      }),
    { timeout: 120_000 }
  )
})
