/**
 * Process-level durability of workflow targets: the example host (`examples/workflow/main.ts`, SQLite engine)
 * killed with SIGKILL while suspended and while an activity is in flight, then started again on the same
 * state directory. Activity executions are counted at a fake side-effect endpoint on 127.0.0.1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Fake from "./utils/FakeSideEffects.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const entry = "examples/workflow/main.ts"

// Starts the example host; a failed start reports what the process printed.
const startExample = (env: Record<string, string>) =>
  ServerProcess.start(env, undefined, entry).pipe(
    Effect.mapError((e) => new ServerProcess.ServerFailed({ message: `${e.message}\n${e.output}`, output: e.output }))
  )

const say = (url: string, message: string) =>
  Effect.tryPromise(() =>
    fetch(`${url}/invocations`, {
      method: "POST",
      body: JSON.stringify({ message, session_id: "crash" }),
      headers: { "content-type": "application/json" }
    }).then(async (r) => ({ status: r.status, body: await r.text() }))
  ).pipe(
    Effect.map((r) => {
      assert.strictEqual(r.status, 200, r.body)
      return JSON.parse(r.body).response as string
    })
  )

const until = (condition: () => boolean, what: string) =>
  Effect.suspend(() => condition() ? Effect.void : Effect.fail(what)).pipe(
    Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 1200 })
  )

describe("WorkflowTarget restarts (process level)", () => {
  it.live(
    "kill -9 while suspended and mid-activity: the execution resumes, nothing completed runs again",
    () =>
      Effect.gen(function*() {
        const upstream = yield* Fake.make({ holdFirst: ["/summarize"] })
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "wf-crash-"))
        const env = { AGENT_HOST_STATE_DIR: dir, WORKFLOW_EXAMPLE_SIDE_EFFECT_URL: upstream.url, LOG_LEVEL: "WARN" }

        const first = yield* startExample(env)
        assert.include(yield* say(first.url, "start"), "Question 1")
        assert.include(yield* say(first.url, "Arthur"), "Question 2")
        yield* first.kill("SIGKILL")

        // Restarted while suspended: the next message answers question two.
        const second = yield* startExample(env)
        assert.include(yield* say(second.url, "the grail"), "Question 3")
        // The last answer starts `summarize`, which the endpoint holds open; kill the host while it is in flight.
        const inflight = yield* Effect.fork(Effect.either(say(second.url, "blue")))
        yield* until(() => upstream.count("/summarize") === 1, "summarize never started")
        yield* second.kill("SIGKILL")
        assert.strictEqual((yield* Fiber.join(inflight))._tag, "Left")

        // Restarted: the engine resumes the execution by itself and runs the in-flight activity again.
        const third = yield* startExample(env)
        yield* until(() => upstream.count("/summarize") === 2, "the execution did not resume")
        // The result reaches the session: its next message delivers what the lost request could not.
        const recovered = yield* say(third.url, "what happened?")
        assert.include(recovered, "Remote summary of 3 answers: Arthur, the grail, blue")

        for (const step of [1, 2, 3]) assert.strictEqual(upstream.count(`/record/${step}`), 1, `record/${step}`)
        const summarizes = upstream.calls().filter((c) => c.key === "/summarize")
        assert.strictEqual(summarizes.length, 2)
        // The repeat carries the same idempotency key, so a real endpoint can drop it.
        assert.isDefined(summarizes[0]!.idempotencyKey)
        assert.strictEqual(summarizes[0]!.idempotencyKey, summarizes[1]!.idempotencyKey)
        // After delivery, the session's next message starts a new execution.
        assert.include(yield* say(third.url, "again"), "Question 1")
      }).pipe(Effect.scoped, Effect.timeout("200 seconds")),
    240_000
  )
})
