import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Option, Stream, TestClock } from "effect"
import * as Telegram from "../src/channels/Telegram/Telegram.js"
import * as Agent from "../src/core/Agent.js"
import type { ChannelContext, PushFailed } from "../src/core/Channel.js"
import type { HostedRunResult } from "../src/domain/ChannelRequest.js"
import type { ChannelIdentity } from "../src/domain/Identity.js"
import type { ChannelName } from "../src/domain/Ids.js"
import type { AgentResponseUpdate } from "../src/domain/Message.js"
import { assistantMessage, userMessage } from "../src/domain/Message.js"
import * as Fake from "./fake/FakeTelegram.js"
import * as Harness from "./fake/TelegramHarness.js"
import { message, sentTexts, updateId } from "./fake/TelegramHarness.js"

const delta = (text: string): AgentResponseUpdate => ({
  messageId: "m1",
  role: "assistant",
  contents: [{ _tag: "text", text }]
})

// Real time passes for HTTP round trips while the TestClock stands still.
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 150)))

/** A long reply with paragraphs, lines and one unbroken run, numbered so order and completeness are checkable. */
const longReply = (): string => {
  const parts: Array<string> = []
  for (let i = 0; parts.join("").length < 9000; i++) {
    parts.push(`Paragraph ${i}: ${"lorem ipsum ".repeat(20 + (i % 7) * 10)}\n${i % 3 === 0 ? "a line\n" : ""}\n`)
  }
  parts.push("x".repeat(1000 - 1) + "END")
  return parts.join("").slice(0, 10_000 - 3) + "END"
}

describe("Telegram replies", () => {
  it.scoped("streams by editing one message, coalesced and throttled, then the final formatted text", () =>
    Effect.gen(function*() {
      const gate1 = yield* Deferred.make<void>()
      const gate2 = yield* Deferred.make<void>()
      const h = yield* Harness.start({
        options: { stream: true, parseMode: "HTML", streamEditInterval: "400 millis" },
        agent: () =>
          Agent.make({
            name: "streamer",
            stream: () =>
              Stream.make(delta("Hello")).pipe(
                Stream.concat(Stream.fromEffect(Deferred.await(gate1)).pipe(Stream.drain)),
                Stream.concat(Stream.make(delta(" wor"), delta("l"), delta("d"))),
                Stream.concat(Stream.fromEffect(Deferred.await(gate2)).pipe(Stream.drain)),
                Stream.concat(Stream.make(delta("!")))
              )
          })
      })
      yield* h.post(message(11, "go", {}, updateId()))
      const first = yield* h.fake.waitFor("sendMessage")
      assert.strictEqual(first[0]!.params.text, "Hello")
      assert.isUndefined(first[0]!.params.parse_mode)
      yield* Deferred.succeed(gate1, undefined)
      yield* settle
      // Three deltas arrived, but the interval has not passed: no edit yet.
      assert.strictEqual(h.fake.callsOf("editMessageText").length, 0)
      yield* TestClock.adjust("399 millis")
      yield* settle
      assert.strictEqual(h.fake.callsOf("editMessageText").length, 0)
      yield* TestClock.adjust("1 millis")
      const edits = yield* h.fake.waitFor("editMessageText", 1)
      assert.strictEqual(edits[0]!.params.text, "Hello world")
      assert.isUndefined(edits[0]!.params.parse_mode)
      // The fake numbers messages from 1: every edit targets the one streamed message.
      assert.strictEqual(edits[0]!.params.message_id, 1)
      yield* Deferred.succeed(gate2, undefined)
      const final = yield* h.fake.waitFor("editMessageText", 2)
      assert.strictEqual(final[1]!.params.text, "Hello world!")
      assert.strictEqual(final[1]!.params.parse_mode, "HTML")
      assert.strictEqual(final[1]!.params.message_id, 1)
      assert.strictEqual(h.fake.callsOf("sendMessage").length, 1)
      assert.strictEqual(h.fake.callsOf("editMessageText").length, 2)
    }))

  it.scoped("resends as plain text when Telegram cannot parse the formatting", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.fail("sendMessage", {
        error_code: 400,
        description: "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 4",
        when: (params) => params.parse_mode !== undefined
      })
      const h = yield* Harness.start({ fake, options: { parseMode: "MarkdownV2" } })
      yield* h.post(message(12, "a_b", {}, updateId()))
      const sent = yield* h.fake.waitFor("sendMessage", 2)
      assert.strictEqual(sent[0]!.params.parse_mode, "MarkdownV2")
      assert.isUndefined(sent[1]!.params.parse_mode)
      assert.strictEqual(sent[1]!.params.text, "echo: a_b (history 0)")
    }))

  it.scoped("retries a rate-limited reply after retry_after", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      fake.fail("sendMessage", { error_code: 429, description: "Too Many Requests: retry after 3", retry_after: 3 })
      const h = yield* Harness.start({ fake })
      yield* h.post(message(13, "hi", {}, updateId()))
      yield* h.fake.waitFor("sendMessage", 1)
      yield* TestClock.adjust("2 seconds")
      yield* settle
      assert.strictEqual(h.fake.callsOf("sendMessage").length, 1)
      yield* TestClock.adjust("1 second")
      const sent = yield* h.fake.waitFor("sendMessage", 2)
      assert.strictEqual(sent[1]!.params.text, "echo: hi (history 0)")
    }))

  for (const stream of [false, true]) {
    it.scoped(`delivers a 10,000-character reply complete and in order (stream: ${stream})`, () =>
      Effect.gen(function*() {
        const text = longReply()
        assert.strictEqual(text.length, 10_000)
        const h = yield* Harness.start({
          options: { stream },
          agent: () =>
            Agent.make({
              name: "verbose",
              run: () => Effect.succeed({ messages: [assistantMessage(text)] }),
              stream: () => Stream.fromIterable(text.match(/[\s\S]{1,700}/g)!.map(delta))
            })
        })
        yield* h.post(message(14, "tell me everything", {}, updateId()))
        if (stream) {
          // The streamed message becomes the first chunk; the rest are new messages.
          yield* h.fake.waitFor("sendMessage", 3)
          yield* settle
          const edits = h.fake.callsOf("editMessageText")
          const first = edits.length === 0 ?
            String(h.fake.callsOf("sendMessage")[0]!.params.text) :
            String(edits[edits.length - 1]!.params.text)
          const rest = sentTexts(h.fake, 14).slice(1)
          const chunks = [first, ...rest]
          assert.isAtLeast(chunks.length, 3)
          for (const chunk of chunks) assert.isAtMost(chunk.length, 4096)
          assert.strictEqual(chunks.join(""), text)
        } else {
          yield* h.fake.waitFor("sendMessage", 3)
          yield* settle
          const chunks = sentTexts(h.fake, 14)
          assert.isAtLeast(chunks.length, 3)
          for (const chunk of chunks) assert.isAtMost(chunk.length, 4096)
          assert.strictEqual(chunks.join(""), text)
          assert.isTrue(chunks[chunks.length - 1]!.endsWith("END"))
        }
      }))
  }

  it.scoped("sends reply images with sendPhoto", () =>
    Effect.gen(function*() {
      const png = Buffer.from("89504e470d0a1a0a", "hex").toString("base64")
      const h = yield* Harness.start({
        agent: () =>
          Agent.make({
            name: "painter",
            run: () =>
              Effect.succeed({
                messages: [{
                  role: "assistant",
                  contents: [
                    { _tag: "text", text: "Here you go" },
                    { _tag: "data", mediaType: "image/png", data: png, name: "dot.png" },
                    { _tag: "uri", mediaType: "image/jpeg", uri: "https://images.example.test/cat.jpg" }
                  ]
                }]
              })
          })
      })
      yield* h.post(message(15, "draw", {}, updateId()))
      yield* h.fake.waitFor("sendMessage")
      const photos = h.fake.callsOf("sendPhoto")
      assert.strictEqual(photos.length, 2)
      assert.strictEqual(photos[0]!.files.photo!.type, "image/png")
      assert.strictEqual(photos[0]!.files.photo!.size, 8)
      assert.strictEqual(photos[0]!.params.chat_id, "15")
      assert.strictEqual(photos[1]!.params.photo, "https://images.example.test/cat.jpg")
      assert.deepStrictEqual(sentTexts(h.fake, 15), ["Here you go"])
    }))

  it.scoped("passes media to the agent as bytes, never as a URL with the bot token", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const photo = new Uint8Array([0xff, 0xd8, 0xff, 1, 2, 3, 4, 5])
      fake.addFile("photo-big", photo, "photos/file_1.jpg")
      fake.addFile("doc-1", new Uint8Array(64 * 1024), "documents/file_2.pdf")
      const h = yield* Harness.start({ fake, options: { maxMediaBytes: 32 * 1024 } })
      yield* h.post(
        message(16, "", {
          caption: "what is this?",
          photo: [{ file_id: "photo-small", width: 90, height: 90 }, { file_id: "photo-big", width: 800, height: 800 }]
        }, updateId())
      )
      yield* h.post(
        message(
          16,
          "",
          { document: { file_id: "doc-1", mime_type: "application/pdf", file_name: "big.pdf" } },
          updateId()
        )
      )
      yield* h.post(message(16, "", { voice: { file_id: "missing", duration: 2 } }, updateId()))
      yield* h.fake.waitFor("sendMessage", 3)
      assert.strictEqual(h.turns.length, 3)
      const [first, second, third] = h.turns.map((t) => t.input[0]!.contents)
      assert.deepStrictEqual(first![0], { _tag: "text", text: "what is this?" })
      assert.deepStrictEqual(first![1], {
        _tag: "data",
        mediaType: "image/jpeg",
        data: Buffer.from(photo).toString("base64")
      })
      assert.strictEqual(second!.length, 1)
      assert.include((second![0] as { text: string }).text, "larger than")
      assert.include((third![0] as { text: string }).text, "voice message that could not be loaded")
      // The largest photo was downloaded; the too-large document never was.
      assert.deepStrictEqual(fake.downloads, ["photos/file_1.jpg"])
      const everything = JSON.stringify(h.turns)
      assert.notInclude(everything, fake.token)
      assert.notInclude(everything, fake.token.split(":")[1]!)
      assert.notInclude(everything, fake.url)
    }))
})

describe("Telegram push", () => {
  const identity = (nativeId: string, attributes?: Record<string, unknown>): ChannelIdentity => ({
    channel: "telegram" as ChannelName,
    nativeId,
    ...(attributes === undefined ? {} : { attributes })
  })
  const result = (text: string, role: "assistant" | "user" = "assistant"): HostedRunResult => ({
    result: undefined,
    response: { messages: [role === "assistant" ? assistantMessage(text) : userMessage(text)] },
    session: undefined,
    sessionId: undefined
  })

  const pushWith = (fake: Fake.FakeTelegram) =>
    Effect.gen(function*() {
      const channel = Telegram.make({ token: fake.token, apiBase: fake.url })
      const ctx = { channel: "telegram" } as unknown as ChannelContext
      const contribution = yield* channel.make(ctx).pipe(Effect.provide(FetchHttpClient.layer))
      return contribution.push!.push
    })

  it.scoped("pushes replies, echoes silently, long replies split, into topics", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const push = yield* pushWith(fake)
      yield* push(identity("21"), result("from the web", "user"), { isEcho: true, idempotencyKey: "k1" })
      yield* push(identity("21"), result("the answer"), { isEcho: false, idempotencyKey: "k1" })
      yield* push(identity("-1003", { message_thread_id: 9 }), result("y".repeat(5000)), {
        isEcho: false,
        idempotencyKey: "k2"
      })
      const sent = fake.callsOf("sendMessage")
      assert.deepStrictEqual(sent[0]!.params, { chat_id: "21", disable_notification: true, text: "from the web" })
      assert.deepStrictEqual(sent[1]!.params, { chat_id: "21", text: "the answer" })
      assert.strictEqual(sent.length, 4)
      assert.strictEqual(sent[2]!.params.message_thread_id, 9)
      assert.strictEqual(String(sent[2]!.params.text) + String(sent[3]!.params.text), "y".repeat(5000))
    }))

  it.scoped("classifies failures: 429 with retry_after, 5xx retryable, 403 and bad ids terminal", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const push = yield* pushWith(fake)
      const attempt = (nativeId: string) =>
        push(identity(nativeId), result("hi"), { isEcho: false, idempotencyKey: `k-${nativeId}` }).pipe(Effect.exit)
      const failure = (exit: Exit.Exit<void, PushFailed>) => {
        assert.isTrue(Exit.isFailure(exit))
        const found = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(found))
        return Option.getOrThrow(found)
      }
      fake.fail("sendMessage", { error_code: 429, description: "Too Many Requests: retry after 7", retry_after: 7 })
      const limited = failure(yield* attempt("31"))
      assert.isTrue(limited.retryable)
      assert.strictEqual(limited.reason, "rate_limited")
      assert.deepStrictEqual(limited.retryAfter, Duration.seconds(7))
      fake.fail("sendMessage", { error_code: 502, description: "Bad Gateway" })
      assert.isTrue(failure(yield* attempt("32")).retryable)
      fake.fail("sendMessage", { error_code: 403, description: "Forbidden: bot was blocked by the user" })
      const blocked = failure(yield* attempt("33"))
      assert.isFalse(blocked.retryable)
      assert.include(blocked.message, "blocked")
      assert.notInclude(blocked.message, fake.token)
      fake.fail("sendMessage", { error_code: 400, description: "Bad Request: chat not found" })
      assert.isFalse(failure(yield* attempt("34")).retryable)
      assert.isFalse(failure(yield* attempt("not-a-chat")).retryable)
      const ok = yield* attempt("35")
      assert.isTrue(Exit.isSuccess(ok))
      // Network failure: nothing listens there.
      const dead = Telegram.make({ token: fake.token, apiBase: "http://127.0.0.1:9" })
      const deadPush = (yield* dead.make({ channel: "telegram" } as unknown as ChannelContext).pipe(
        Effect.provide(FetchHttpClient.layer)
      )).push!.push
      const network = failure(
        yield* Effect.exit(deadPush(identity("36"), result("hi"), { isEcho: false, idempotencyKey: "n" }))
      )
      assert.isTrue(network.retryable)
      assert.notInclude(network.message, fake.token)
    }))

  it.scoped("a retried push does not repeat parts already delivered", () =>
    Effect.gen(function*() {
      const fake = yield* Fake.make()
      const push = yield* pushWith(fake)
      const long = "p".repeat(4000) + "\n\n" + "q".repeat(4000)
      fake.fail("sendMessage", {
        error_code: 500,
        description: "Internal Server Error",
        when: (p) => String(p.text).startsWith("q")
      })
      const first = yield* Effect.exit(push(identity("41"), result(long), { isEcho: false, idempotencyKey: "same" }))
      assert.isTrue(Exit.isFailure(first))
      yield* push(identity("41"), result(long), { isEcho: false, idempotencyKey: "same" })
      const texts = sentTexts(fake, 41)
      assert.deepStrictEqual(texts.map((t) => t[0]), ["p", "q", "q"])
      assert.strictEqual(texts[0]! + texts[2]!, long)
    }))
})
