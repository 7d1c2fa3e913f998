import { FetchHttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Queue, Stream, TestClock } from "effect"
import * as Crypto from "node:crypto"
import type { Options } from "../src/channels/Discord/Discord.js"
import * as Discord from "../src/channels/Discord/Discord.js"
import { messages as discordMessages } from "../src/channels/Discord/Render.js"
import * as Agent from "../src/core/Agent.js"
import { AgentHost } from "../src/core/AgentHost.js"
import type { ChannelContext, ChannelState, PushFailed } from "../src/core/Channel.js"
import type { Turn } from "../src/core/Target.js"
import type { HostedRunResult } from "../src/domain/ChannelRequest.js"
import { textOf } from "../src/domain/Content.js"
import type { ChannelIdentity } from "../src/domain/Identity.js"
import type { ChannelName } from "../src/domain/Ids.js"
import type { AgentResponseUpdate } from "../src/domain/Message.js"
import { assistantMessage, userMessage } from "../src/domain/Message.js"
import * as FakeDiscord from "./fake/FakeDiscord.js"
import * as TestHost from "./utils/TestHost.js"

/** A real Ed25519 key pair; the public key as Discord shows it (64 hex characters). */
const keyPair = () => {
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ed25519")
  const x = publicKey.export({ format: "jwk" }).x!
  return { privateKey, publicKeyHex: Buffer.from(x, "base64url").toString("hex") }
}

const lastUserText = (turn: Turn) => {
  const user = turn.input.filter((m) => m.role === "user")
  return textOf(user[user.length - 1]?.contents ?? [])
}

type Reply = (turn: Turn) => Effect.Effect<string>

const echo: Reply = (turn) => Effect.succeed(`echo: ${lastUserText(turn)} (history ${turn.history.length})`)

interface Harness {
  readonly fake: FakeDiscord.FakeDiscord
  readonly turns: Array<Turn>
  readonly url: string
  readonly privateKey: Crypto.KeyObject
  /** Posts a body signed with `key` (default the app's) at `timestamp` (default now, from Clock). */
  readonly post: (
    body: unknown,
    options?: {
      readonly key?: Crypto.KeyObject
      readonly timestamp?: number
      readonly headers?: "none" | "no-signature"
      readonly tamper?: boolean
    }
  ) => Effect.Effect<{ status: number; body: Record<string, unknown> }>
}

const start = (
  config: {
    readonly fake?: FakeDiscord.FakeDiscord
    readonly reply?: Reply
    /** A streaming agent instead of `reply`. */
    readonly stream?: (turn: Turn) => Stream.Stream<AgentResponseUpdate>
    readonly options?: Partial<Options>
    readonly keys?: ReturnType<typeof keyPair>
  } = {}
) =>
  Effect.gen(function*() {
    const fake = config.fake ?? (yield* FakeDiscord.make())
    const keys = config.keys ?? keyPair()
    const turns: Array<Turn> = []
    const reply = config.reply ?? echo
    const stream = config.stream
    const agent = stream !== undefined ?
      Agent.make({
        name: "streamer",
        stream: (turn) => {
          turns.push(turn)
          return stream(turn)
        }
      }) :
      Agent.make({
        name: "echo",
        run: (turn) =>
          Effect.map(Effect.zipRight(Effect.sync(() => turns.push(turn)), reply(turn)), (text) => ({
            messages: [assistantMessage(text)]
          }))
      })
    const channel = Discord.make({
      applicationId: fake.applicationId,
      publicKey: keys.publicKeyHex,
      botToken: fake.botToken,
      apiBase: fake.url,
      ...config.options
    })
    const layer = TestHost.layer({ channels: [channel], target: Agent.layer(agent) })
    const context = yield* Layer.build(Layer.provide(layer, FetchHttpClient.layer)).pipe(Effect.orDie)
    const host = Context.get(context, AgentHost)
    const url = `${host.url}/discord/interactions`
    const post: Harness["post"] = (body, options = {}) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const timestamp = String(options.timestamp ?? Math.floor(now / 1000))
        const text = typeof body === "string" ? body : JSON.stringify(body)
        const signature = Crypto.sign(
          null,
          Buffer.from(timestamp + text, "utf8"),
          options.key ?? keys.privateKey
        ).toString("hex")
        const headers: Record<string, string> = { "content-type": "application/json" }
        if (options.headers !== "none") {
          headers["x-signature-timestamp"] = timestamp
          if (options.headers !== "no-signature") headers["x-signature-ed25519"] = signature
        }
        const sent = options.tamper === true ? text.replace("hello", "HELLO") : text
        return yield* Effect.promise(() =>
          fetch(url, { method: "POST", headers, body: sent }).then(async (r) => ({
            status: r.status,
            body: JSON.parse(await r.text()) as Record<string, unknown>
          }))
        )
      })
    const harness: Harness = { fake, turns, url, privateKey: keys.privateKey, post }
    return harness
  })

let nextInteraction = 1

/** A slash command interaction as Discord sends it (in a guild channel unless `dm`). */
const command = (
  fake: FakeDiscord.FakeDiscord,
  name: string,
  options: Record<string, string> = {},
  where: { readonly channelId?: string; readonly userId?: string; readonly dm?: boolean } = {}
) => {
  const id = String(1_300_000_000_000_000_000n + BigInt(nextInteraction++))
  const user = { id: where.userId ?? "4000000000000001", username: "ada", global_name: "Ada" }
  return {
    id,
    application_id: fake.applicationId,
    type: 2,
    token: `interaction-token-${id}`,
    version: 1,
    channel_id: where.channelId ?? "5000000000000001",
    ...(where.dm === true ?
      { user, context: 1 } :
      { guild_id: "6000000000000001", member: { user, roles: [] }, context: 0 }),
    data: {
      id: "7000000000000001",
      name,
      type: 1,
      options: Object.entries(options).map(([key, value]) => ({ name: key, type: 3, value }))
    }
  }
}

// Real time for HTTP round trips while the TestClock stands still.
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 150)))

/** Sets the TestClock to the real time, so signed timestamps look like Discord's. */
const realTime = TestClock.setTime(Date.now())

describe("Discord interactions", () => {
  it.scoped("PING is answered with PONG; /ask is deferred, then the reply edits @original", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start()
      const ping = yield* h.post({ id: "1", application_id: h.fake.applicationId, type: 1, token: "t", version: 1 })
      assert.deepStrictEqual(ping, { status: 200, body: { type: 1 } })

      const ask = command(h.fake, "ask", { prompt: "hello" })
      const deferred = yield* h.post(ask)
      assert.deepStrictEqual(deferred, { status: 200, body: { type: 5 } })
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      const [edited] = h.fake.messages
      assert.strictEqual(edited!.via, "original")
      assert.strictEqual(edited!.token, ask.token)
      assert.strictEqual(edited!.content, "echo: hello (history 0)")
      // Webhook calls need no bot token; mentions in agent text never ping.
      const patch = h.fake.callsTo("PATCH", /@original$/)[0]!
      assert.isUndefined(patch.authorization)
      assert.deepStrictEqual((patch.body as Record<string, unknown>).allowed_mentions, { parse: [] })
      assert.match(patch.userAgent ?? "", /^DiscordBot \(/)

      // The session is the channel; the identity is the user.
      const turn = h.turns[0]!
      assert.strictEqual(turn.context.sessionKey, "discord:5000000000000001")
      assert.strictEqual(turn.context.identity?.nativeId, "4000000000000001")
      assert.strictEqual(turn.context.identity?.channel, "discord")

      // Same channel, same conversation; a DM is another one.
      yield* h.post(command(h.fake, "ask", { prompt: "again" }))
      yield* h.post(command(h.fake, "ask", { prompt: "in private" }, { channelId: "5000000000000009", dm: true }))
      yield* h.fake.waitUntil(() => h.fake.messages.length === 3)
      const contents = h.fake.messages.map((m) => m.content).sort()
      assert.deepStrictEqual(contents, [
        "echo: again (history 2)",
        "echo: hello (history 0)",
        "echo: in private (history 0)"
      ])
      assert.strictEqual(h.turns[2]!.context.sessionKey, "discord:5000000000000009")
    }))

  it.scoped("bad, missing, stale or foreign signatures are 401 JSON and the agent is never called", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start()
      const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      const attempts = [
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { tamper: true }),
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { headers: "none" }),
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { headers: "no-signature" }),
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { timestamp: now - 600 }),
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { timestamp: now + 600 }),
        yield* h.post(command(h.fake, "ask", { prompt: "hello" }), { key: keyPair().privateKey }),
        // PING too: Discord probes the endpoint with bad signatures.
        yield* h.post({ id: "1", application_id: h.fake.applicationId, type: 1, token: "t" }, {
          tamper: false,
          key: keyPair().privateKey
        })
      ]
      for (const attempt of attempts) {
        assert.strictEqual(attempt.status, 401)
        assert.strictEqual((attempt.body.error as Record<string, unknown>).type, "invalid_signature")
      }
      assert.include(String((attempts[3]!.body.error as Record<string, unknown>).message), "timestamp")
      assert.include(String((attempts[1]!.body.error as Record<string, unknown>).message), "X-Signature-Ed25519")
      yield* settle
      assert.strictEqual(h.turns.length, 0)
      assert.deepStrictEqual(h.fake.calls.filter((c) => !c.path.includes("/commands")), [])
    }))

  it.scoped("a long reply is split at 2,000 characters: @original, then follow-ups, nothing lost", () =>
    Effect.gen(function*() {
      yield* realTime
      const paragraph = (i: number) => `Paragraph ${i}: ${"lorem ipsum ".repeat(30 + (i % 5) * 20)}\n\n`
      let long = ""
      for (let i = 0; long.length < 5500; i++) long += paragraph(i)
      long += "z".repeat(2500)
      const h = yield* start({ reply: () => Effect.succeed(long) })
      const ask = command(h.fake, "ask", { prompt: "a lot" })
      assert.strictEqual((yield* h.post(ask)).body.type, 5)
      yield* h.fake.waitUntil(() => h.fake.messages.map((m) => m.content).join("").length === long.length)
      const sent = h.fake.messages
      assert.isAtLeast(sent.length, 4)
      assert.strictEqual(sent[0]!.via, "original")
      for (const message of sent.slice(1)) assert.strictEqual(message.via, "followup")
      for (const message of sent) assert.isAtMost(message.content.length, 2000)
      assert.strictEqual(sent.map((m) => m.content).join(""), long)
      assert.isTrue(sent.every((m) => m.token === ask.token))
    }))

  it.scoped("/reset starts a new conversation; /help, unknown commands and components get ephemeral notes", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start()
      yield* h.post(command(h.fake, "ask", { prompt: "one" }))
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      const reset = yield* h.post(command(h.fake, "reset"))
      assert.strictEqual(reset.status, 200)
      assert.strictEqual(reset.body.type, 4)
      yield* h.post(command(h.fake, "ask", { prompt: "two" }))
      yield* h.fake.waitUntil(() => h.fake.messages.length === 2)
      assert.strictEqual(h.fake.messages[1]!.content, "echo: two (history 0)")

      const help = yield* h.post(command(h.fake, "help"))
      assert.strictEqual((help.body.data as Record<string, unknown>).flags, 64)
      const unknown = yield* h.post(command(h.fake, "nope"))
      assert.include(String((unknown.body.data as Record<string, unknown>).content), "Unknown command")
      const empty = yield* h.post(command(h.fake, "ask", { prompt: "  " }))
      assert.strictEqual(empty.body.type, 4)
      const component = yield* h.post({
        ...command(h.fake, "ask"),
        type: 3,
        data: { custom_id: "x", component_type: 2 }
      })
      assert.strictEqual(component.body.type, 4)
      assert.strictEqual((component.body.data as Record<string, unknown>).flags, 64)
      const autocomplete = yield* h.post({ ...command(h.fake, "ask"), type: 4 })
      assert.deepStrictEqual(autocomplete.body, { type: 8, data: { choices: [] } })
      assert.strictEqual(h.turns.length, 2)
    }))

  it.scoped("signed but bad input is a 4xx JSON error: bad JSON, not an interaction, unknown type, replay", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start()
      const cases = [
        yield* h.post("{not json"),
        yield* h.post("[1,2]"),
        yield* h.post({ type: 2 }),
        yield* h.post({ ...command(h.fake, "ask"), type: 42 }),
        yield* h.post({ ...command(h.fake, "ask"), application_id: "999" })
      ]
      for (const response of cases) {
        assert.isTrue(response.status >= 400 && response.status < 500, JSON.stringify(response))
        assert.isString((response.body.error as Record<string, unknown>).message)
      }
      assert.strictEqual((cases[0]!.body.error as Record<string, unknown>).type, "invalid_json")
      assert.include(String((cases[3]!.body.error as Record<string, unknown>).message), "42")
      const ask = command(h.fake, "ask", { prompt: "once" })
      assert.strictEqual((yield* h.post(ask)).status, 200)
      const replay = yield* h.post(ask)
      assert.strictEqual(replay.status, 409)
      const tooLarge = yield* h.post({ ...ask, padding: "x".repeat(2_000_000) })
      assert.strictEqual(tooLarge.status, 413)
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      yield* settle
      assert.strictEqual(h.turns.length, 1)
    }))

  it.scoped("a reply ready after the 15-minute token goes to the channel with the bot token", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start({
        reply: (turn) => Effect.as(Effect.sleep("20 minutes"), `late: ${lastUserText(turn)}`)
      })
      assert.strictEqual((yield* h.post(command(h.fake, "ask", { prompt: "slow" }))).body.type, 5)
      yield* settle
      assert.strictEqual(h.turns.length, 1)
      yield* TestClock.adjust("20 minutes")
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      const [late] = h.fake.messages
      assert.strictEqual(late!.via, "channel")
      assert.strictEqual(late!.channel_id, "5000000000000001")
      assert.strictEqual(late!.content, "late: slow")
      assert.strictEqual(h.fake.callsTo("PATCH", /webhooks/).length, 0)
    }))

  it.scoped("a token Discord no longer accepts falls back to the channel", () =>
    Effect.gen(function*() {
      yield* realTime
      const h = yield* start()
      const ask = command(h.fake, "ask", { prompt: "hi" })
      h.fake.expireToken(ask.token)
      yield* h.post(ask)
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      assert.strictEqual(h.fake.messages[0]!.via, "channel")
      assert.strictEqual(h.fake.callsTo("PATCH", /webhooks/).length, 1)
    }))

  it.scoped("slash commands are registered once across two startups", () =>
    Effect.gen(function*() {
      yield* realTime
      const fake = yield* FakeDiscord.make()
      const keys = keyPair()
      yield* Effect.scoped(start({ fake, keys }))
      yield* Effect.scoped(start({ fake, keys }))
      assert.strictEqual(fake.callsTo("GET", /\/commands$/).length, 2)
      const puts = fake.callsTo("PUT", /\/commands$/)
      assert.strictEqual(puts.length, 1)
      assert.strictEqual(puts[0]!.authorization, `Bot ${fake.botToken}`)
      assert.deepStrictEqual(fake.commands().map((c) => c.name).sort(), ["ask", "help", "reset"])
      // A changed command set is written again.
      yield* Effect.scoped(start({
        fake,
        keys,
        options: { commands: [{ name: "status", description: "Show the status", handle: () => Effect.void }] }
      }))
      assert.strictEqual(fake.callsTo("PUT", /\/commands$/).length, 2)
    }))
})

describe("Discord streaming edits", () => {
  const streamer = (deltas: Queue.Queue<string>) => () =>
    Stream.fromQueue(deltas).pipe(
      Stream.takeWhile((delta) => delta !== "<end>"),
      Stream.map((delta): AgentResponseUpdate => ({ role: "assistant", contents: [{ _tag: "text", text: delta }] }))
    )
  const patchesOf = (fake: FakeDiscord.FakeDiscord, token: string) => () =>
    fake.callsTo("PATCH", /\/messages\/@original$/).filter((c) => c.path.includes(token)).map((c) =>
      String((c.body as Record<string, unknown>).content)
    )

  it.scoped("@original shows the text so far at most once a second, in order; the final edit is exact", () =>
    Effect.gen(function*() {
      yield* realTime
      const deltas = yield* Queue.unbounded<string>()
      const h = yield* start({ stream: streamer(deltas), options: { streamEditInterval: "1 second" } })
      const ask = command(h.fake, "ask", { prompt: "tell me" })
      assert.strictEqual((yield* h.post(ask)).body.type, 5)
      const patches = patchesOf(h.fake, ask.token)

      // Text within the first interval: no edit yet (a quick reply gets only the final one).
      yield* Queue.offer(deltas, "Hello")
      yield* settle
      assert.deepStrictEqual(patches(), [])
      yield* TestClock.adjust("1 second")
      yield* h.fake.waitUntil(() => patches().length === 1)
      assert.deepStrictEqual(patches(), ["Hello"])

      // Many chunks within an interval make one edit with all of them, after the interval.
      yield* Queue.offerAll(deltas, [", ", "wor", "ld"])
      yield* settle
      assert.lengthOf(patches(), 1)
      yield* TestClock.adjust("1 second")
      yield* h.fake.waitUntil(() => patches().length === 2)
      assert.strictEqual(patches()[1], "Hello, world")

      // Nothing new: no edit, however long it takes.
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.lengthOf(patches(), 2)

      // Past 2,000 characters the edit shows the first message's worth; then the final reply: @original exact,
      // the rest as follow-ups, the whole text and nothing else.
      const long = "\n\n" + "x".repeat(1500) + "\n\n" + "y".repeat(1500)
      yield* Queue.offer(deltas, long)
      yield* h.fake.waitUntil(() => patches().length === 3)
      const full = "Hello, world" + long
      const parts = discordMessages(full)
      assert.lengthOf(parts, 2)
      assert.strictEqual(patches()[2], parts[0])
      yield* Queue.offer(deltas, "<end>")
      yield* h.fake.waitUntil(() => h.fake.messages.some((m) => m.via === "followup"))
      assert.deepStrictEqual(patches(), ["Hello", "Hello, world", parts[0], parts[0]])
      const shown = h.fake.messages.filter((m) => m.token === ask.token)
      assert.deepStrictEqual(shown.map((m) => m.via), ["original", "followup"])
      assert.strictEqual(shown.map((m) => m.content).join(""), full)
      assert.strictEqual(h.turns.length, 1)
    }))

  it.scoped("an exhausted rate-limit bucket skips interim edits; the final edit waits for the reset", () =>
    Effect.gen(function*() {
      yield* realTime
      const deltas = yield* Queue.unbounded<string>()
      const h = yield* start({ stream: streamer(deltas), options: { streamEditInterval: "1 second" } })
      // Every edit leaves the bucket empty for 3 s (X-RateLimit-Remaining: 0, -Reset-After: 3).
      h.fake.rateLimit("PATCH", /\/messages\/@original$/, { remaining: 0, resetAfter: 3 })
      const ask = command(h.fake, "ask", { prompt: "go" })
      yield* h.post(ask)
      const patches = patchesOf(h.fake, ask.token)
      yield* Queue.offer(deltas, "one")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* h.fake.waitUntil(() => patches().length === 1)
      // The next interval's edit is not sent: the bucket is empty, and an interim edit never waits.
      yield* Queue.offer(deltas, " two")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(patches(), ["one"])
      // The final edit waits for the reset instead of spending a request Discord would refuse.
      yield* Queue.offer(deltas, "<end>")
      yield* settle
      assert.deepStrictEqual(patches(), ["one"])
      yield* TestClock.adjust("2 seconds")
      yield* h.fake.waitUntil(() => patches().length === 2)
      assert.deepStrictEqual(patches(), ["one", "one two"])
      assert.strictEqual(h.fake.callsTo("PATCH", /@original$/).length, 2)
    }))

  it.scoped("streamEditInterval false: one edit with the whole reply", () =>
    Effect.gen(function*() {
      yield* realTime
      const deltas = yield* Queue.unbounded<string>()
      const h = yield* start({ stream: streamer(deltas), options: { streamEditInterval: false } })
      const ask = command(h.fake, "ask", { prompt: "go" })
      yield* h.post(ask)
      yield* Queue.offer(deltas, "a")
      yield* TestClock.adjust("5 seconds")
      yield* Queue.offerAll(deltas, ["b", "<end>"])
      yield* h.fake.waitUntil(() => h.fake.messages.length === 1)
      assert.deepStrictEqual(patchesOf(h.fake, ask.token)(), ["ab"])
    }))
})

describe("Discord push", () => {
  const identity = (nativeId: string): ChannelIdentity => ({ channel: "discord" as ChannelName, nativeId })
  const result = (text: string, role: "assistant" | "user" = "assistant"): HostedRunResult => ({
    result: undefined,
    response: { messages: [role === "assistant" ? assistantMessage(text) : userMessage(text)] },
    session: undefined,
    sessionId: undefined
  })
  const memoryState = (): ChannelState => {
    const cursors = new Map<string, string>()
    return {
      getCursor: (name: string) => Effect.sync(() => Option.fromNullable(cursors.get(name))),
      setCursor: (name: string, value: string) => Effect.sync(() => void cursors.set(name, value))
    } as unknown as ChannelState
  }
  const pushWith = (fake: FakeDiscord.FakeDiscord) =>
    Effect.gen(function*() {
      const channel = Discord.make({
        applicationId: fake.applicationId,
        publicKey: keyPair().publicKeyHex,
        botToken: fake.botToken,
        apiBase: fake.url
      })
      const ctx = { channel: "discord", state: memoryState() } as unknown as ChannelContext
      const contribution = yield* channel.make(ctx).pipe(Effect.provide(FetchHttpClient.layer))
      return contribution.push!.push
    })
  const failure = (exit: Exit.Exit<void, PushFailed>) => {
    assert.isTrue(Exit.isFailure(exit))
    return Option.getOrThrow(Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none())
  }

  it.scoped("pushes to a channel and to a DM (opened once), long replies split, echoes silent", () =>
    Effect.gen(function*() {
      const fake = yield* FakeDiscord.make()
      const push = yield* pushWith(fake)
      yield* push(identity("channel:5000000000000002"), result("to the channel"), {
        isEcho: false,
        idempotencyKey: "a"
      })
      yield* push(identity("4000000000000007"), result("from the web", "user"), { isEcho: true, idempotencyKey: "b" })
      yield* push(identity("user:4000000000000007"), result("y".repeat(4500)), { isEcho: false, idempotencyKey: "b" })
      const dm = fake.dmChannelOf("4000000000000007")
      assert.strictEqual(fake.callsTo("POST", /^\/users\/@me\/channels$/).length, 1)
      const [first, echo, ...rest] = fake.messages
      assert.deepStrictEqual([first!.channel_id, first!.content, first!.via], [
        "5000000000000002",
        "to the channel",
        "channel"
      ])
      assert.deepStrictEqual([echo!.channel_id, echo!.content, echo!.flags], [dm, "from the web", 4096])
      assert.strictEqual(rest.length, 3)
      assert.strictEqual(rest.map((m) => m.content).join(""), "y".repeat(4500))
      assert.isTrue(rest.every((m) => m.channel_id === dm && m.flags === undefined && m.nonce !== undefined))
      assert.isTrue(fake.calls.every((c) => c.authorization === `Bot ${fake.botToken}`))
      const bad = failure(
        yield* Effect.exit(push(identity("general"), result("x"), { isEcho: false, idempotencyKey: "c" }))
      )
      assert.isFalse(bad.retryable)
    }))

  it.scoped("a 429 waits retry_after and succeeds; a long or global one goes back to the runner", () =>
    Effect.gen(function*() {
      const fake = yield* FakeDiscord.make()
      const push = yield* pushWith(fake)
      fake.fail("POST", /^\/channels\/\d+\/messages$/, { status: 429, retryAfter: 1.5 })
      const fiber = yield* Effect.fork(
        push(identity("channel:5000000000000003"), result("patience"), { isEcho: false, idempotencyKey: "r" })
      )
      yield* fake.waitUntil(() => fake.calls.length === 1)
      yield* settle
      assert.strictEqual(fake.calls.length, 1)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(fake.calls.length, 1)
      yield* TestClock.adjust("600 millis")
      yield* Fiber.join(fiber)
      assert.strictEqual(fake.calls.length, 2)
      assert.strictEqual(fake.messages[0]!.content, "patience")

      fake.fail("POST", /^\/channels\/\d+\/messages$/, { status: 429, retryAfter: 30, global: true })
      const limited = failure(
        yield* Effect.exit(
          push(identity("channel:5000000000000003"), result("x"), { isEcho: false, idempotencyKey: "g" })
        )
      )
      assert.strictEqual(limited.reason, "rate_limited")
      assert.isTrue(limited.retryable)
      assert.deepStrictEqual(limited.retryAfter, Duration.seconds(30))
      // The global limit holds every route until it passes, without asking Discord.
      const calls = fake.calls.length
      const held = failure(
        yield* Effect.exit(push(identity("4000000000000008"), result("x"), { isEcho: false, idempotencyKey: "h" }))
      )
      assert.strictEqual(held.reason, "rate_limited")
      assert.strictEqual(fake.calls.length, calls)
      yield* TestClock.adjust("31 seconds")
      yield* push(identity("4000000000000008"), result("after"), { isEcho: false, idempotencyKey: "h" })
      assert.strictEqual(fake.messages.at(-1)!.content, "after")
    }))

  it.scoped("a used-up bucket paces the next request on its route until it resets", () =>
    Effect.gen(function*() {
      const fake = yield* FakeDiscord.make()
      const push = yield* pushWith(fake)
      fake.rateLimit("POST", /^\/channels\/5000000000000004\/messages$/, { remaining: 0, resetAfter: 2 })
      const target = identity("channel:5000000000000004")
      yield* push(target, result("first"), { isEcho: false, idempotencyKey: "p1" })
      const second = yield* Effect.fork(push(target, result("second"), { isEcho: false, idempotencyKey: "p2" }))
      yield* settle
      assert.strictEqual(fake.messages.length, 1)
      // Another route is not held.
      yield* push(identity("channel:5000000000000005"), result("elsewhere"), { isEcho: false, idempotencyKey: "p3" })
      assert.strictEqual(fake.messages.length, 2)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.messages.map((m) => m.content), ["first", "elsewhere", "second"])
    }))

  it.scoped("5xx and network failures are retryable; a retried push does not repeat delivered parts", () =>
    Effect.gen(function*() {
      const fake = yield* FakeDiscord.make()
      const push = yield* pushWith(fake)
      fake.fail("POST", /^\/channels\/\d+\/messages$/, { status: 403, code: 50001, message: "Missing Access" })
      const denied = failure(
        yield* Effect.exit(
          push(identity("channel:5000000000000006"), result("x"), { isEcho: false, idempotencyKey: "d" })
        )
      )
      assert.isFalse(denied.retryable)
      assert.include(denied.message, "Missing Access")
      assert.notInclude(denied.message, fake.botToken)
      const long = "p".repeat(1999) + "\n" + "q".repeat(1999)
      fake.fail("POST", /^\/channels\/\d+\/messages$/, {
        status: 502,
        when: (body) => String(body.content).startsWith("q")
      })
      const target = identity("channel:5000000000000006")
      const first = failure(yield* Effect.exit(push(target, result(long), { isEcho: false, idempotencyKey: "same" })))
      assert.isTrue(first.retryable)
      assert.strictEqual(first.reason, "unavailable")
      yield* push(target, result(long), { isEcho: false, idempotencyKey: "same" })
      assert.deepStrictEqual(fake.messages.map((m) => m.content[0]), ["p", "q"])
      // Nothing listens there.
      const dead = Discord.make({
        applicationId: fake.applicationId,
        publicKey: keyPair().publicKeyHex,
        botToken: fake.botToken,
        apiBase: "http://127.0.0.1:9/api/v10"
      })
      const ctx = { channel: "discord", state: memoryState() } as unknown as ChannelContext
      const deadPush = (yield* dead.make(ctx).pipe(Effect.provide(FetchHttpClient.layer))).push!.push
      const network = failure(yield* Effect.exit(deadPush(target, result("x"), { isEcho: false, idempotencyKey: "n" })))
      assert.isTrue(network.retryable)
      assert.strictEqual(network.reason, "unreachable")
    }))
})
