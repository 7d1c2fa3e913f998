import type { Message, StreamResponse, Task } from "@a2a-js/sdk"
import { Role, TaskState } from "@a2a-js/sdk"
import type { Client } from "@a2a-js/sdk/client"
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } from "@a2a-js/sdk/client"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Queue, Schedule, Stream } from "effect"
import { A2A } from "../src/channels/A2A/index.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import * as TestHost from "./utils/TestHost.js"

const message = (text: string): Message => ({
  messageId: crypto.randomUUID(),
  contextId: "",
  taskId: "",
  role: Role.ROLE_USER,
  parts: [{ content: { $case: "text", value: text }, metadata: {}, filename: "", mediaType: "text/plain" }],
  metadata: {},
  extensions: [],
  referenceTaskIds: []
})

const send = (text: string) => ({
  tenant: "",
  message: message(text),
  configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: false },
  metadata: {}
})

const client = (baseUrl: string, key: string) =>
  Effect.promise(() => {
    const fetchImpl: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers)
      headers.set("authorization", `Bearer ${key}`)
      return fetch(input, { ...init, headers })
    }
    return new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        transports: [new JsonRpcTransportFactory({ fetchImpl })]
      })
    ).createFromUrl(baseUrl)
  })

/** The next event of a stream (it must not end first). */
const next = (events: AsyncGenerator<StreamResponse>) =>
  Effect.promise(async () => {
    const result = await events.next()
    assert.isFalse(result.done, "the stream goes on")
    return result.value as StreamResponse
  })

const artifactText = (event: StreamResponse): string | undefined => {
  if (event.payload?.$case !== "artifactUpdate") return undefined
  const content = event.payload.value.artifact?.parts[0]?.content
  return content?.$case === "text" ? content.value : undefined
}

/** The error a resubscription fails with, by the SDK's error class name. */
const subscribeError = (a2a: Client, id: string) =>
  Effect.promise(async () => {
    try {
      for await (const _ of a2a.resubscribeTask({ tenant: "", id })) return "subscribed"
      return "ended"
    } catch (error) {
      return (error as Error).name
    }
  })

describe("A2A SubscribeToTask", () => {
  it.scopedLive("a dropped stream is picked up again; finished, unknown and others' tasks are errors", () =>
    Effect.gen(function*() {
      const deltas = yield* Queue.unbounded<string>()
      const ctx = yield* Layer.build(TestHost.layer({
        channels: [A2A.make()],
        settings: { apiKeys: ["k1", "k2"] },
        target: Agent.layer(Agent.make({
          name: "slow",
          stream: () =>
            Stream.fromQueue(deltas).pipe(
              Stream.takeWhile((delta) => delta !== "<end>"),
              Stream.map((delta) => ({
                role: "assistant" as const,
                contents: [{ _tag: "text" as const, text: delta }]
              }))
            )
        }))
      }))
      const host = ctx.unsafeMap.get(AgentHost.key) as AgentHost["Type"]
      const a2a = yield* client(host.url, "k1")
      const other = yield* client(host.url, "k2")

      // Stream until the first chunk, then drop the stream.
      const first = a2a.sendMessageStream(send("take your time"))
      const opened = yield* next(first)
      assert.strictEqual(opened.payload?.$case, "task")
      const task = opened.payload!.value as Task
      yield* Queue.offer(deltas, "one ")
      let chunk: string | undefined
      while (chunk === undefined) chunk = artifactText(yield* next(first))
      assert.strictEqual(chunk, "one ")
      yield* Effect.promise(() => first.return(undefined))

      // Another caller cannot attach to the running task.
      assert.strictEqual(yield* subscribeError(other, task.id), "TaskNotFoundError")

      // Resubscribe: the task as it stands, then what happens after.
      const resumed = a2a.resubscribeTask({ tenant: "", id: task.id })
      const snapshot = yield* next(resumed)
      assert.strictEqual(snapshot.payload?.$case, "task")
      const current = snapshot.payload!.value as Task
      assert.strictEqual(current.id, task.id)
      assert.strictEqual(current.status?.state, TaskState.TASK_STATE_WORKING)
      yield* Queue.offerAll(deltas, ["two ", "three", "<end>"])
      const rest: Array<StreamResponse> = []
      yield* Effect.promise(async () => {
        for (let r = await resumed.next(); r.done !== true; r = await resumed.next()) rest.push(r.value)
      })
      const chunks = rest.map(artifactText).filter((t) => t !== undefined)
      // The appended chunks in order, then the whole reply replacing them.
      assert.deepStrictEqual(chunks, ["two ", "three", "one two three"])
      const last = rest.at(-1)!.payload
      assert.strictEqual(last?.$case, "statusUpdate")
      if (last?.$case === "statusUpdate") {
        assert.strictEqual(last.value.status?.state, TaskState.TASK_STATE_COMPLETED)
        const reply = last.value.status?.message?.parts[0]?.content
        assert.strictEqual(reply?.$case === "text" ? reply.value : "", "one two three")
      }

      // The store has the end though no one read the first stream to it. A resubscriber sees events as they
      // are published, the store gets them a moment later (the SDK's design): wait for it, boundedly.
      const stored = yield* Effect.promise(() => a2a.getTask({ tenant: "", id: task.id })).pipe(
        Effect.filterOrFail((t) => t.status?.state === TaskState.TASK_STATE_COMPLETED, () => "not yet"),
        Effect.retry(Schedule.intersect(Schedule.spaced("20 millis"), Schedule.recurs(100))),
        Effect.orDieWith(() => new Error("the stored task never completed"))
      )
      const artifact = stored.artifacts[0]?.parts[0]?.content
      assert.strictEqual(artifact?.$case === "text" ? artifact.value : "", "one two three")

      // A finished task cannot be subscribed to (UnsupportedOperation), an unknown one is not found.
      assert.strictEqual(yield* subscribeError(a2a, task.id), "UnsupportedOperationError")
      assert.strictEqual(yield* subscribeError(a2a, crypto.randomUUID()), "TaskNotFoundError")
    }))
})
