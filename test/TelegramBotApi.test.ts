import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Redacted, Schema, TestClock, Tracer } from "effect"
import * as BotApi from "../src/channels/Telegram/BotApi.js"
import * as Fake from "./fake/FakeTelegram.js"

const client = (fake: Fake.FakeTelegram, apiBase = fake.url) =>
  BotApi.make({ token: Redacted.make(fake.token), apiBase }).pipe(Effect.provide(FetchHttpClient.layer))

/** A tracer that records the spans of the current one, to look at their attributes. */
const recording = (spans: Array<Tracer.Span>) =>
  Effect.map(Effect.tracer, (base) =>
    Tracer.make({
      span: (...args) => {
        const span = base.span(...args)
        spans.push(span)
        return span
      },
      context: base.context
    }))

const attributesOf = (spans: ReadonlyArray<Tracer.Span>) =>
  JSON.stringify(spans.map((span) => [span.name, [...(span as unknown as Tracer.Span).attributes.entries()]]))

describe("Telegram Bot API client", () => {
  it.scoped("spans name the method, never the URL with the token; transport errors are redacted", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const api = yield* client(fake)
      // A port nothing listens on any more.
      const closed = yield* Effect.scoped(Effect.map(Fake.make(), (gone) => gone.url))
      const dead = yield* client(fake, closed)
      const spans: Array<Tracer.Span> = []
      const tracer = yield* recording(spans)
      const me = yield* api.call("getMe", {}, Schema.Struct({ id: Schema.Number })).pipe(Effect.withTracer(tracer))
      assert.strictEqual(me.id, fake.botId)
      const failed = yield* dead.call("sendMessage", { chat_id: 1, text: "x" }, Schema.Unknown).pipe(
        Effect.withTracer(tracer),
        Effect.either
      )
      assert.isTrue(Either.isLeft(failed))
      const error = Either.getLeft(failed).pipe((o) => o._tag === "Some" ? o.value : undefined)!
      assert.strictEqual(error._tag, "TelegramTransportError")
      // The cause is named (the connection was refused), the token is not.
      assert.match(error.message, /^Telegram sendMessage failed: .*ECONNREFUSED/)
      assert.notInclude(error.message, fake.token)
      const names = spans.map((span) => span.name)
      assert.deepStrictEqual(names, ["Telegram.BotApi.call", "Telegram.BotApi.call"])
      const recorded = attributesOf(spans)
      assert.include(recorded, "getMe")
      assert.notInclude(recorded, fake.token)
      assert.notInclude(recorded, fake.token.split(":")[1]!)
    }))

  it.scoped("a download stops at the limit even when the length is not declared", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.addFile("big", new Uint8Array(256 * 1024), "documents/big.bin", { declareLength: false })
      fake.addFile("small", new Uint8Array([1, 2, 3]), "documents/small.bin", { declareLength: false })
      const api = yield* client(fake)
      const big = yield* Effect.either(api.download("documents/big.bin", 64 * 1024))
      assert.isTrue(Either.isLeft(big) && big.left._tag === "TelegramFileTooLarge")
      const small = yield* api.download("documents/small.bin", 64 * 1024)
      assert.deepStrictEqual([...small], [1, 2, 3])
      const missing = yield* Effect.either(api.download("documents/none.bin", 64 * 1024))
      assert.isTrue(Either.isLeft(missing) && missing.left._tag === "TelegramApiError")
    }))

  it.scoped("a call that outlasts its timeout fails as a transport error and gives up the request", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make({ maxHoldMillis: 30_000 })
      const api = yield* client(fake)
      const call = yield* Effect.fork(
        api.call("getUpdates", { timeout: 30 }, Schema.Unknown, { timeout: "5 seconds" }).pipe(Effect.either)
      )
      yield* fake.waitFor("getUpdates")
      yield* TestClock.adjust("5 seconds")
      const result = yield* Fiber.join(call)
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "TelegramTransportError")
        assert.include(result.left.message, "timed out")
      }
      // The held poll was abandoned (the connection closed), not left for Telegram to answer later.
      yield* fake.waitUntil(() => !fake.polling())
    }))
})
