import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import * as AgentHost from "../src/core/AgentHost.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import * as RuntimeMode from "../src/core/RuntimeMode.js"
import * as DurablePush from "../src/delivery/DurablePush.js"
import type { HostedRunResult } from "../src/domain/ChannelRequest.js"
import type { HostingMetadata } from "../src/domain/Message.js"
import * as StateStore from "../src/state/StateStore.js"
import * as PushChannels from "./utils/PushChannels.js"

const log: Array<PushChannels.Delivery> = []
const hooked: Array<string> = []

// Each hook mutates its copy in place: if copies were shared, the markers would leak between destinations.
const marking = (marker: string) => ({
  response: (result: HostedRunResult, context: { readonly isEcho: boolean; readonly originating: boolean }) =>
    Effect.sync(() => {
      hooked.push(`${marker}:${context.originating ? "originating" : "push"}:${context.isEcho ? "echo" : "reply"}`)
      const first = result.response.messages[0]
      if (first !== undefined) (first.contents as Array<unknown>).push({ _tag: "text", text: ` [${marker}]` })
      return result
    })
})

const channels = [
  PushChannels.make("alpha", log, { hooks: marking("alpha") }),
  PushChannels.make("beta", log, { hooks: marking("beta") }),
  PushChannels.make("gamma", log, { push: false }),
  // Its run hook sets targets (trusted code): "hook" replies to beta:hook-friend; "relay" passes the caller's
  // target on, with echo added.
  PushChannels.make("delta", log, {
    hooks: {
      run: (request) =>
        Effect.sync(() => {
          const text = request.input.map((m) => m.contents.map((c) => c._tag === "text" ? c.text : "").join("")).join(
            ""
          )
          if (text.includes("hook")) {
            return { ...request, responseTarget: { kind: "channels", targets: ["beta:hook-friend"] } }
          }
          if (text.includes("relay") && request.responseTarget !== undefined) {
            return { ...request, responseTarget: { ...request.responseTarget, echoInput: true } }
          }
          return request
        })
    }
  })
]

const PUSH_KEY = "delivery-push-key"

const hostLayer = AgentHost.layer({ channels }).pipe(
  Layer.provideMerge(HostLayers.layerCoreWith({ push: DurablePush.layerMemory })),
  Layer.provide(DefaultAgent.layer),
  Layer.provideMerge(StateStore.layerMemory),
  Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", pushKeys: [PUSH_KEY] }))
)

/**
 * `withPushKey`: the bearer may name any identity. The resolution tests below name strangers on purpose (an
 * identity no session of theirs knows), which needs that permission.
 */
const say = (channel: string, body: Record<string, unknown>, options: { readonly withPushKey?: boolean } = {}) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const r = await fetch(`${host.url}/${channel}/say`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(options.withPushKey === true ? { authorization: `Bearer ${PUSH_KEY}` } : {})
        },
        body: JSON.stringify(body)
      })
      if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`)
      return (await r.json()) as { reply: string | null }
    }))

const sayRaw = (channel: string, body: Record<string, unknown>) =>
  Effect.flatMap(AgentHost.AgentHost, (host) =>
    Effect.promise(async () => {
      const r = await fetch(`${host.url}/${channel}/say`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      return { status: r.status, body: (await r.json()) as { error: { type: string; message: string } } }
    }))

const waitFor = <A>(check: () => A | undefined, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const value = check()
      if (value !== undefined) return value
      yield* Effect.sleep("10 millis")
    }
    return assert.fail(`timed out waiting for ${what}`)
  })

/** The hosting annotation of the last assistant message stored for `session`. */
const lastAnnotation = (session: string) =>
  Effect.gen(function*() {
    const store = yield* StateStore.StateStore
    const history = yield* store.loadHistory(`shared:${session}`)
    const last = history.filter((m) => m.role === "assistant").at(-1)
    return last?.hosting as HostingMetadata | undefined
  })

const since = (start: number) => log.slice(start)

describe("Delivery", () => {
  layer(hostLayer, { excludeTestServices: true })((it) => {
    it.effect("originating (default): the reply comes back, nothing is pushed, nothing annotated", () =>
      Effect.gen(function*() {
        const start = log.length
        const out = yield* say("alpha", { text: "hi", user: "u1", session: "orig" })
        assert.include(out.reply!, "hi")
        assert.include(out.reply!, "[alpha]")
        const hosting = yield* lastAnnotation("orig")
        assert.isUndefined(hosting?.intendedTargets)
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(since(start), [])
      }))

    it.effect("a caller names only identities of its own session; a stranger is refused before the turn runs", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("beta", { text: "hi", user: "own-b", session: "acl" })
        // beta:own-b is recorded on this session: naming it needs no permission.
        const own = yield* say("alpha", {
          text: "to my beta",
          user: "own-a",
          session: "acl",
          target: { kind: "channels", targets: ["beta:own-b"] }
        })
        assert.isNull(own.reply)
        const pushed = yield* waitFor(() => since(start)[0], "the push to beta:own-b")
        assert.deepStrictEqual([pushed.channel, pushed.nativeId], ["beta", "own-b"])
        const store = yield* StateStore.StateStore
        const before = (yield* store.loadHistory("shared:acl")).length
        const afterPushes = log.length
        const refused = yield* sayRaw("alpha", {
          text: "spam them",
          user: "own-a",
          session: "acl",
          target: { kind: "channels", targets: ["beta:own-b", "beta:stranger", "gamma:g"], echoInput: true }
        })
        assert.strictEqual(refused.status, 403)
        assert.strictEqual(refused.body.error.type, "response_target_refused")
        assert.include(refused.body.error.message, "beta:stranger, gamma:g")
        assert.notInclude(refused.body.error.message, "own-b")
        assert.include(refused.body.error.message, "AGENT_HOST_PUSH_KEYS")
        const identities = yield* sayRaw("alpha", {
          text: "spam",
          user: "own-a",
          session: "acl",
          target: { kind: "identities", identities: [{ channel: "beta", nativeId: "stranger" }] }
        })
        assert.strictEqual(identities.status, 403)
        const streamed = yield* sayRaw("alpha", {
          text: "spam",
          user: "own-a",
          session: "acl",
          stream: true,
          target: { kind: "channels", targets: ["beta:stranger"] }
        })
        assert.strictEqual(streamed.status, 403)
        // Nothing ran: no history, no push.
        yield* Effect.sleep("100 millis")
        assert.strictEqual((yield* store.loadHistory("shared:acl")).length, before)
        assert.deepStrictEqual(log.slice(afterPushes), [])
        // The same request with a push key goes through.
        yield* say("alpha", {
          text: "allowed now",
          user: "own-a",
          session: "acl",
          target: { kind: "channels", targets: ["beta:stranger"] }
        }, { withPushKey: true })
        const granted = yield* waitFor(() => log.slice(afterPushes)[0], "the granted push")
        assert.deepStrictEqual([granted.channel, granted.nativeId], ["beta", "stranger"])
      }))

    it.effect("a target the run hook sets is trusted; a caller's destination the hook passes on is still checked", () =>
      Effect.gen(function*() {
        const start = log.length
        const hooked = yield* say("delta", { text: "hook please", user: "d1", session: "hooked" })
        assert.isNull(hooked.reply)
        const pushed = yield* waitFor(() => since(start)[0], "the hook's push")
        assert.deepStrictEqual([pushed.channel, pushed.nativeId], ["beta", "hook-friend"])
        // The caller named beta:hook-friend itself: the hook replaces the target with the same one, still fine,
        // but a caller's stranger that the hook merely passes on (adding echo) is refused.
        const relayed = yield* sayRaw("delta", {
          text: "relay this",
          user: "d1",
          session: "hooked",
          target: { kind: "channels", targets: ["beta:stranger-2"] }
        })
        assert.strictEqual(relayed.status, 403)
        assert.include(relayed.body.error.message, "beta:stranger-2")
      }))

    it.effect("active reaches the channel used before this request, and moves with the user", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("alpha", { text: "first", user: "a-user", session: "act" })
        // Asked on beta: the active channel is alpha (beta is recorded only after delivery).
        const out = yield* say("beta", {
          text: "where am I",
          user: "b-user",
          session: "act",
          target: { kind: "active" }
        })
        assert.isNull(out.reply)
        const pushed = yield* waitFor(() => since(start)[0], "the push to alpha")
        assert.strictEqual(pushed.channel, "alpha")
        assert.strictEqual(pushed.nativeId, "a-user")
        assert.include(pushed.text, "where am I")
        assert.isFalse(pushed.isEcho)
        const hosting = yield* lastAnnotation("act")
        assert.deepStrictEqual(hosting?.intendedTargets, ["alpha:a-user"])
        assert.isFalse(hosting?.includesOriginating)
        assert.isUndefined(hosting?.originatingChannel)
        // Now beta is the active channel: active from alpha pushes to beta.
        const back = yield* say("alpha", {
          text: "and now",
          user: "a-user",
          session: "act",
          target: { kind: "active" }
        })
        assert.isNull(back.reply)
        const second = yield* waitFor(() => since(start)[1], "the push to beta")
        assert.deepStrictEqual([second.channel, second.nativeId], ["beta", "b-user"])
      }))

    it.effect("active with nothing known, or the requester's own channel, replies on the originating channel", () =>
      Effect.gen(function*() {
        const fresh = yield* say("alpha", { text: "hello", user: "u", session: "act-none", target: { kind: "active" } })
        assert.isNotNull(fresh.reply)
        const hosting = yield* lastAnnotation("act-none")
        assert.deepStrictEqual(hosting?.intendedTargets, [])
        assert.isTrue(hosting?.includesOriginating)
        assert.strictEqual(hosting?.originatingChannel, "alpha")
        assert.deepStrictEqual(hosting?.skippedTargets, [{ target: "active", reason: "no active channel is known" }])
        const same = yield* say("alpha", { text: "again", user: "u", session: "act-none", target: { kind: "active" } })
        assert.isNotNull(same.reply)
        assert.isUndefined((yield* lastAnnotation("act-none"))?.skippedTargets)
      }))

    it.effect("channels: bare names, channel:id, originating, unknown and push-less channels, duplicates", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("beta", { text: "register", user: "bee", session: "ch" })
        const out = yield* say("alpha", {
          text: "fan out",
          user: "ay",
          session: "ch",
          target: {
            kind: "channels",
            targets: ["beta", "originating", "alpha:other", "beta:bee", "nowhere:1", "gamma:g", "gamma", "beta:"]
          }
        }, { withPushKey: true })
        assert.isNotNull(out.reply)
        const hosting = yield* lastAnnotation("ch")
        assert.deepStrictEqual(hosting?.intendedTargets, ["beta:bee", "alpha:other"])
        assert.isTrue(hosting?.includesOriginating)
        assert.strictEqual(hosting?.originatingChannel, "alpha")
        assert.deepStrictEqual(hosting?.skippedTargets, [
          { target: "gamma", reason: "no known identity" },
          { target: "beta:", reason: "empty native id" },
          { target: "nowhere:1", reason: "no channel with that name" },
          { target: "gamma:g", reason: "the channel cannot push" }
        ])
        yield* waitFor(() => since(start).length >= 2 ? true : undefined, "two pushes")
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(
          since(start).map((d) => `${d.channel}:${d.nativeId}`).sort(),
          ["alpha:other", "beta:bee"]
        )
      }))

    it.effect("channels naming only the unreachable falls back to the originating channel", () =>
      Effect.gen(function*() {
        const out = yield* say("alpha", {
          text: "nobody",
          user: "x",
          session: "fallback",
          target: { kind: "channels", targets: ["beta", "gamma:1"] }
        }, { withPushKey: true })
        assert.include(out.reply!, "nobody")
        const hosting = yield* lastAnnotation("fallback")
        assert.deepStrictEqual(hosting?.intendedTargets, [])
        assert.isTrue(hosting?.includesOriginating)
        assert.strictEqual(hosting?.skippedTargets?.length, 2)
      }))

    it.effect("identities: pushed as given; the requester's own identity is the originating reply", () =>
      Effect.gen(function*() {
        const start = log.length
        const out = yield* say("alpha", {
          text: "to them",
          user: "me",
          session: "ids",
          target: {
            kind: "identities",
            identities: [{ channel: "beta", nativeId: "them" }, { channel: "alpha", nativeId: "me" }]
          }
        }, { withPushKey: true })
        assert.isNotNull(out.reply)
        const pushed = yield* waitFor(() => since(start)[0], "push")
        assert.deepStrictEqual([pushed.channel, pushed.nativeId], ["beta", "them"])
        assert.deepStrictEqual((yield* lastAnnotation("ids"))?.intendedTargets, ["beta:them"])
      }))

    it.effect("all_linked: every other registered channel, plus the originating one", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("beta", { text: "hi", user: "b9", session: "all" })
        yield* say("alpha", { text: "hi", user: "a9", session: "all" })
        const out = yield* say("alpha", {
          text: "everyone",
          user: "a9",
          session: "all",
          target: { kind: "all_linked" }
        })
        assert.isNotNull(out.reply)
        const pushed = yield* waitFor(() => since(start)[0], "push")
        assert.deepStrictEqual([pushed.channel, pushed.nativeId], ["beta", "b9"])
        const hosting = yield* lastAnnotation("all")
        assert.deepStrictEqual(hosting?.intendedTargets, ["beta:b9"])
        assert.isTrue(hosting?.includesOriginating)
      }))

    it.effect("none: no reply and no push; the decision is still stored", () =>
      Effect.gen(function*() {
        const start = log.length
        const out = yield* say("alpha", { text: "shh", user: "q", session: "none", target: { kind: "none" } })
        assert.isNull(out.reply)
        const hosting = yield* lastAnnotation("none")
        assert.deepStrictEqual(hosting?.intendedTargets, [])
        assert.isFalse(hosting?.includesOriginating)
        yield* Effect.sleep("50 millis")
        assert.deepStrictEqual(since(start), [])
      }))

    it.effect("echoInput: the user's message reaches the destination before the reply, one key, echo flagged", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("beta", { text: "hi", user: "eb", session: "echo" })
        yield* say("alpha", {
          text: "please echo me",
          user: "ea",
          session: "echo",
          target: { kind: "channels", targets: ["beta"], echoInput: true }
        })
        yield* waitFor(() => since(start).length >= 2 ? true : undefined, "echo and reply")
        const [echo, reply] = since(start)
        assert.isTrue(echo!.isEcho)
        assert.deepStrictEqual(echo!.roles, ["user"])
        assert.include(echo!.text, "please echo me")
        assert.isFalse(reply!.isEcho)
        assert.deepStrictEqual(reply!.roles, ["assistant"])
        assert.strictEqual(echo!.key, reply!.key)
      }))

    it.effect("each destination gets a private copy shaped by its own hook", () =>
      Effect.gen(function*() {
        const start = log.length
        hooked.length = 0
        yield* say("beta", { text: "hi", user: "hb", session: "hooks" })
        hooked.length = 0
        const out = yield* say("alpha", {
          text: "shape me",
          user: "ha",
          session: "hooks",
          target: { kind: "channels", targets: ["beta", "alpha:friend", "originating"], echoInput: true }
        }, { withPushKey: true })
        assert.include(out.reply!, "[alpha]")
        assert.notInclude(out.reply!, "[beta]")
        yield* waitFor(() => since(start).length >= 4 ? true : undefined, "four deliveries")
        for (const d of since(start)) {
          assert.include(d.text, `[${d.channel}]`, JSON.stringify(d))
          assert.notInclude(d.text, `[${d.channel === "alpha" ? "beta" : "alpha"}]`)
          // One marker per copy: the hook ran on a fresh copy every time.
          assert.strictEqual(d.text.split(`[${d.channel}]`).length, 2)
        }
        assert.sameMembers(hooked, [
          "alpha:originating:reply",
          "beta:push:echo",
          "beta:push:reply",
          "alpha:push:echo",
          "alpha:push:reply"
        ])
        // History stores the agent's reply, not any destination's shaped copy.
        const store = yield* StateStore.StateStore
        const history = yield* store.loadHistory("shared:hooks")
        const stored = JSON.stringify(history.at(-1))
        assert.notInclude(stored, "[alpha]")
        assert.notInclude(stored, "[beta]")
      }))

    it.effect("a streaming origination hands the full final response to delivery", () =>
      Effect.gen(function*() {
        const start = log.length
        yield* say("beta", { text: "hi", user: "sb", session: "stream" })
        const out = yield* say("alpha", {
          text: "streamed words here",
          user: "sa",
          session: "stream",
          stream: true,
          target: { kind: "channels", targets: ["beta"] }
        })
        assert.isNull(out.reply)
        const pushed = yield* waitFor(() => since(start)[0], "push")
        assert.include(pushed.text, "streamed words here")
        assert.deepStrictEqual((yield* lastAnnotation("stream"))?.intendedTargets, ["beta:sb"])
      }))
  })
})

describe("RuntimeMode", () => {
  const withEnv = (env: Record<string, string>) =>
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  layer(Layer.empty)((it) => {
    it.effect("detects ephemeral platforms; the explicit mode wins", () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* withEnv({})(RuntimeMode.config), {
          mode: "long_running",
          source: "auto-detected default"
        })
        assert.deepStrictEqual(yield* withEnv({ K_SERVICE: "svc" })(RuntimeMode.config), {
          mode: "ephemeral",
          source: "auto-detected from K_SERVICE"
        })
        assert.deepStrictEqual(
          yield* withEnv({ AWS_LAMBDA_FUNCTION_NAME: "f", FOUNDRY_HOSTING_ENVIRONMENT: "prod" })(RuntimeMode.config),
          { mode: "ephemeral", source: "auto-detected from FOUNDRY_HOSTING_ENVIRONMENT" }
        )
        assert.strictEqual(
          (yield* withEnv({ AZURE_FUNCTIONS_ENVIRONMENT: "" })(RuntimeMode.config)).mode,
          "long_running"
        )
        assert.deepStrictEqual(
          yield* withEnv({ K_SERVICE: "svc", AGENT_HOST_RUNTIME_MODE: "long_running" })(RuntimeMode.config),
          { mode: "long_running", source: "explicit" }
        )
      }))

    it.effect("ephemeral mode refuses the in-memory runner unless allowed", () =>
      Effect.gen(function*() {
        const build = (env: Record<string, string>) =>
          Layer.build(
            DurablePush.layerMemory.pipe(
              Layer.provide(HostLayers.layerCore),
              Layer.provide(DefaultAgent.layer),
              Layer.provide(StateStore.layerMemory),
              Layer.provide(HostConfig.layer())
            )
          ).pipe(
            Effect.scoped,
            withEnv(env),
            Effect.either
          )
        const refused = yield* build({ AZURE_FUNCTIONS_ENVIRONMENT: "Production" })
        assert.strictEqual(refused._tag, "Left")
        if (refused._tag === "Left") {
          assert.strictEqual(refused.left._tag, "HostConfigurationError")
          assert.include((refused.left as { message: string }).message, "AGENT_HOST_ALLOW_IN_PROCESS_RUNNER")
        }
        const allowed = yield* build({
          AZURE_FUNCTIONS_ENVIRONMENT: "Production",
          AGENT_HOST_ALLOW_IN_PROCESS_RUNNER: "true"
        })
        assert.strictEqual(allowed._tag, "Right")
        assert.strictEqual((yield* build({}))._tag, "Right")
      }))
  })
})
