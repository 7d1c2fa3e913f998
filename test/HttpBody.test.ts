/**
 * Body reading outside a route handler: a read that can be interrupted removes its listeners when it is (a route
 * handler's read runs uninterruptibly and registers none), and the JSON read's failures keep their messages.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber } from "effect"
import type { IncomingMessage } from "node:http"
import { PassThrough } from "node:stream"
import { readJson } from "../src/http/HttpBody.js"
import type { IncomingRequest } from "../src/http/IncomingRequest.js"
import { readJsonObject } from "../src/http/JsonObject.js"

const requestOf = (source: PassThrough): IncomingRequest => ({
  method: "POST",
  url: "/",
  headers: {} as IncomingRequest["headers"],
  source: source as unknown as IncomingMessage,
  remoteAddress: undefined
})

describe("HttpBody", () => {
  it.effect("an interrupted read removes its listeners", () =>
    Effect.gen(function*() {
      const source = new PassThrough()
      const fiber = yield* Effect.fork(Effect.interruptible(readJson(requestOf(source), 1_000)))
      yield* Effect.yieldNow()
      assert.strictEqual(source.listenerCount("data"), 1)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(source.listenerCount("data"), 0)
      assert.strictEqual(source.listenerCount("end"), 0)
    }))

  it.effect("a JSON object is read; other bodies fail with what is wrong", () =>
    Effect.gen(function*() {
      const read = (text: string) => {
        const source = new PassThrough()
        source.end(text)
        return Effect.either(readJsonObject(requestOf(source), 1_000))
      }
      assert.deepStrictEqual(yield* read("{\"a\":1}"), Either.right({ a: 1 }))
      const notObject = yield* read("[1]")
      assert.isTrue(Either.isLeft(notObject) && notObject.left.reason === "NotAnObject")
      const invalid = yield* read("{")
      assert.isTrue(Either.isLeft(invalid) && invalid.left.reason === "InvalidJson" && invalid.left.status === 400)
      const large = yield* read(`{"a":"${"x".repeat(2_000)}"}`)
      assert.isTrue(Either.isLeft(large) && large.left.reason === "BodyTooLarge" && large.left.status === 413)
    }))
})
