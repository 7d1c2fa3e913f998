import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Random, Schema } from "effect"
import * as Invocations from "../src/channels/Invocations.js"
import * as Responses from "../src/channels/Responses/index.js"
import * as WebChat from "../src/channels/WebChat/WebChat.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Turns from "../src/core/Turns.js"
import * as TaskRunner from "../src/delivery/TaskRunner.js"
import { issueId } from "../src/domain/Ids.js"
import * as TestHost from "./utils/TestHost.js"

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then((r) => r.text())
  )

const Job = TaskRunner.define("ids.job", Schema.Struct({}))

/** Every kind of handle a fresh host issues, with Effect's `Random` pinned to `seed`. */
const issuedUnderSeed = (seed: number) =>
  Effect.scoped(
    Effect.gen(function*() {
      const ctx = yield* Layer.build(
        TestHost.layer({ channels: [Responses.make(), Invocations.make(), WebChat.make()] })
      )
      const host = Context.get(ctx, AgentHost)
      const invocation = JSON.parse(yield* post(`${host.url}/invocations`, { message: "hi" }))
      const response = JSON.parse(yield* post(`${host.url}/v1/responses`, { model: "m", input: "hi" }))
      const sse = yield* post(`${host.url}/webchat/messages`, { message: "hi", user: "user-0001" })
      const start = sse.split("\n").find((line) => line.startsWith("data: {\"session\""))!
      const webchat = JSON.parse(start.slice(6)).session as string
      const alias = yield* Context.get(ctx, Turns.Turns).contextFor("invocations").resetSession("invocations:k")
      const runner = Context.get(yield* Layer.build(TaskRunner.layerMemory()), TaskRunner.TaskRunner)
      yield* runner.register(Job, () => Effect.void)
      const task = (yield* runner.schedule(Job, {})).id
      return {
        invocation: invocation.session_id as string,
        response: response.id as string,
        webchat,
        alias: alias.slice("invocations:k#".length),
        task,
        helper: yield* issueId()
      }
    })
  ).pipe(Effect.withRandom(Random.make(seed)))

describe("issued ids", () => {
  it.live("come from the CSPRNG: a pinned Random seed does not repeat them, and each carries 128 random bits", () =>
    Effect.gen(function*() {
      const first = yield* issuedUnderSeed(7)
      const second = yield* issuedUnderSeed(7)
      for (const kind of Object.keys(first) as Array<keyof typeof first>) {
        assert.notStrictEqual(first[kind], second[kind], `${kind} ids repeat under the same seed`)
        // 32 hex digits after the prefix (a task or response id's prefix includes its creation time, for index
        // locality): 128 bits, URL- and header-safe.
        assert.match(
          first[kind],
          /^(inv_|c|resp_[0-9a-f]{12}|task_[0-9a-f]{12})?[0-9a-f]{32}$/,
          `${kind} id ${first[kind]}`
        )
      }
    }))
})
