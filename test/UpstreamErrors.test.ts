/**
 * An upstream model failure reaches the caller as a generic error with a request id; the upstream's details
 * (its URL, its body, anything key-like it echoes) reach the log only, under that request id.
 */
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, Redacted } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as OpenAiAgent from "../src/core/OpenAiAgent.js"
import * as LogLine from "../src/internal/LogLine.js"
import * as FakeOpenAi from "./fake/FakeOpenAi.js"
import * as TestHost from "./utils/TestHost.js"

const API_KEY = "sk-test-upstream-key-0001"
const LEAKED = "sk-live-ABCDEF0123456789leaked"

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then(async (r) => ({ status: r.status, body: await r.text() }))
  )

describe("upstream model errors", () => {
  it.scoped("reach callers as a generic error with a request id; the details are logged under that id", () => {
    const lines: Array<string> = []
    const capture = Logger.replace(Logger.defaultLogger, Logger.make((o) => void lines.push(LogLine.format(o))))
    return Effect.gen(function*() {
      let base = ""
      const fake = yield* FakeOpenAi.make(() => ({
        kind: "error",
        status: 401,
        message: `Incorrect API key provided: ${LEAKED} (upstream ${base}/v1/responses)`
      }))
      base = fake.url
      const agent = yield* OpenAiAgent.make().pipe(
        Effect.provide(
          OpenAiLanguageModel.layer({ model: "gpt-test" }).pipe(
            Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make(API_KEY), apiUrl: fake.url })),
            Layer.provide(FetchHttpClient.layer)
          )
        )
      )
      const ctx = yield* Layer.build(TestHost.layer({
        channels: [Responses.make(), Invocations.make(), WebChat.make()],
        target: Agent.layer(agent)
      }))
      const url = Context.get(ctx, AgentHost).url
      const host = new URL(fake.url).host
      const replies = [
        yield* post(`${url}/invocations`, { message: "hi" }),
        yield* post(`${url}/invocations`, { message: "hi", stream: true }),
        yield* post(`${url}/v1/responses`, { input: "hi" }),
        yield* post(`${url}/v1/responses`, { input: "hi", stream: true }),
        yield* post(`${url}/webchat/messages`, { message: "hi", user: "user-0001" })
      ]
      for (const reply of replies) {
        for (const secret of [LEAKED, API_KEY, host, "Incorrect API key"]) {
          assert.notInclude(reply.body, secret, reply.body)
        }
        assert.include(reply.body, "the model provider failed", reply.body)
        const id = /req_[0-9a-f]{32}/.exec(reply.body)?.[0]
        assert.isDefined(id, reply.body)
        const logged = lines.filter((line) => line.includes(id!))
        assert.isAbove(logged.length, 0, `no log line names ${id}`)
        const details = logged.join("\n")
        assert.include(details, LEAKED)
        assert.include(details, host)
      }
      const blocking = JSON.parse(replies[0]!.body) as { error: { type: string; request_id: string; message: string } }
      assert.strictEqual(replies[0]!.status, 500)
      assert.strictEqual(blocking.error.type, "agent_error")
      assert.match(blocking.error.request_id, /^req_[0-9a-f]{32}$/)
    }).pipe(Effect.provide(capture))
  })
})
