import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Logger, Metric } from "effect"
import * as Allowlists from "../src/auth/Allowlist.js"
import type { AuthorizationConfig, AuthorizationOutcome } from "../src/auth/Authorization.js"
import * as Authorization from "../src/auth/Authorization.js"
import type { IdentityLinkerShape } from "../src/auth/IdentityLinker.js"
import * as IdentityLinker from "../src/auth/IdentityLinker.js"
import type { ChannelKind } from "../src/core/Channel.js"
import { Channels } from "../src/core/Channels.js"
import * as ChannelsModule from "../src/core/Channels.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import type { ChannelIdentity } from "../src/domain/Identity.js"
import type { IsolationKey } from "../src/domain/Ids.js"
import { userMessage } from "../src/domain/Message.js"
import * as Time from "../src/domain/Time.js"
import { StateStore } from "../src/state/StateStore.js"
import * as StateStoreModule from "../src/state/StateStore.js"

const defaultChannels: ReadonlyArray<readonly [string, ChannelKind]> = [
  ["telegram", "chat"],
  ["webchat", "chat"],
  ["invocations", "programmatic"]
]

const setup = (
  config: AuthorizationConfig,
  options: {
    readonly linker?: IdentityLinkerShape
    readonly channels?: ReadonlyArray<readonly [string, ChannelKind]>
  } = {}
) =>
  Effect.gen(function*() {
    const channels = ChannelsModule.make()
    for (const [name, kind] of options.channels ?? defaultChannels) {
      yield* channels.register({ name, contribution: { path: `/${name}`, routes: [], kind } })
    }
    const store = yield* StateStoreModule.makeMemory
    const auth = yield* Authorization.make(config).pipe(
      Effect.provideService(StateStore, store),
      Effect.provideService(Channels, channels),
      Effect.provideService(IdentityLinker.IdentityLinker, options.linker ?? IdentityLinker.none)
    )
    return { auth, store }
  })

const request = (
  channel: string,
  nativeId: string | undefined,
  options: { readonly key?: string; readonly attributes?: Record<string, unknown> } = {}
): ChannelRequest => ({
  channel,
  operation: "message.create",
  input: [userMessage("hi")],
  stream: false,
  ...(nativeId === undefined ? {} : { identity: { channel, nativeId } as ChannelIdentity }),
  ...(options.key === undefined ? {} : { session: { isolationKey: options.key as IsolationKey } }),
  ...(options.attributes === undefined ? {} : { attributes: options.attributes })
})

const summary = (outcome: AuthorizationOutcome) => {
  switch (outcome._tag) {
    case "Allowed":
      return { _tag: outcome._tag, key: outcome.isolationKey, reason: outcome.reasonCode, phase: outcome.phase }
    case "Denied":
      return { _tag: outcome._tag, reason: outcome.reasonCode, phase: outcome.phase }
    case "LinkRequired":
      return { _tag: outcome._tag, challenge: outcome.challenge.challengeId, phase: outcome.phase }
  }
}

const allowEnv = Either.getOrThrow(Authorization.parseAllow("telegram:1, telegram:2,webchat:*"))
const staffOnly = Allowlists.linkedClaim("group", "staff")
const challengeLinker = IdentityLinker.make((who) =>
  Effect.succeed(IdentityLinker.challenge({ challengeId: `c-${who.nativeId}`, url: "https://sign.in/x" }))
)
const linkerWith = (claims: Record<string, string>) =>
  IdentityLinker.make((who) => Effect.succeed(IdentityLinker.linked(`person:${who.nativeId}`, claims)))

interface Case {
  readonly name: string
  readonly config: AuthorizationConfig
  readonly linker?: IdentityLinkerShape
  readonly request: ChannelRequest
  readonly expected: ReturnType<typeof summary>
}

const cases: ReadonlyArray<Case> = [
  {
    name: "open: a chat identity runs under its default key",
    config: Authorization.open,
    request: request("telegram", "7"),
    expected: { _tag: "Allowed", key: "telegram:7", reason: "open", phase: "pre_link" }
  },
  {
    name: "open: a request without identity passes unchanged",
    config: Authorization.open,
    request: request("telegram", undefined, { key: "telegram:x" }),
    expected: { _tag: "Allowed", key: "telegram:x", reason: "open", phase: "pre_link" }
  },
  {
    name: "env allowlist: a listed id is allowed",
    config: allowEnv,
    request: request("telegram", "2"),
    expected: { _tag: "Allowed", key: "telegram:2", reason: "allowlist_allowed_pre_link", phase: "pre_link" }
  },
  {
    name: "env allowlist: an unlisted id is denied",
    config: allowEnv,
    request: request("telegram", "3"),
    expected: { _tag: "Denied", reason: "allowlist_denied_pre_link", phase: "pre_link" }
  },
  {
    name: "env allowlist: channel:* is open",
    config: allowEnv,
    request: request("webchat", "anyone", { key: "webchat:browser-1" }),
    expected: { _tag: "Allowed", key: "webchat:browser-1", reason: "open", phase: "pre_link" }
  },
  {
    name: "env allowlist: a chat channel with no entry is closed",
    config: Either.getOrThrow(Authorization.parseAllow("webchat:*")),
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "allowlist_denied_pre_link", phase: "pre_link" }
  },
  {
    name: "env allowlist: a chat request without identity is refused",
    config: allowEnv,
    request: request("telegram", undefined, { key: "telegram:1" }),
    expected: { _tag: "Denied", reason: "identity_missing", phase: "pre_link" }
  },
  {
    name: "programmatic, not named: its identity is not checked",
    config: allowEnv,
    request: request("invocations", "stranger", { key: "invocations:s1" }),
    expected: { _tag: "Allowed", key: "invocations:s1", reason: "api_key", phase: "pre_link" }
  },
  {
    name: "programmatic, named: a listed identity passes, its key unchanged",
    config: Either.getOrThrow(Authorization.parseAllow("invocations:svc")),
    request: request("invocations", "svc", { key: "invocations:s1" }),
    expected: { _tag: "Allowed", key: "invocations:s1", reason: "allowlist_allowed_pre_link", phase: "pre_link" }
  },
  {
    name: "programmatic, named: an unlisted identity is denied",
    config: Either.getOrThrow(Authorization.parseAllow("invocations:svc")),
    request: request("invocations", "other", { key: "invocations:s1" }),
    expected: { _tag: "Denied", reason: "allowlist_denied_pre_link", phase: "pre_link" }
  },
  {
    name: "programmatic, named: no identity, the API key suffices",
    config: Either.getOrThrow(Authorization.parseAllow("invocations:svc")),
    request: request("invocations", undefined, { key: "invocations:s1" }),
    expected: { _tag: "Allowed", key: "invocations:s1", reason: "api_key", phase: "pre_link" }
  },
  {
    name: "programmatic: a scoped part of the default names it",
    config: { allowlist: Allowlists.nativeIds(["svc"], { channel: "invocations" }) },
    request: request("invocations", "other"),
    expected: { _tag: "Denied", reason: "allowlist_denied_pre_link", phase: "pre_link" }
  },
  {
    name: "a default scoped to another channel says nothing here: open",
    config: { allowlist: Allowlists.nativeIds(["1"], { channel: "telegram" }) },
    request: request("webchat", "w"),
    expected: { _tag: "Allowed", key: "webchat:w", reason: "open", phase: "pre_link" }
  },
  {
    name: "per-channel open overrides a closed default",
    config: { allowlist: Allowlists.denyAll, channels: { webchat: { allowlist: "open" } } },
    request: request("webchat", "w"),
    expected: { _tag: "Allowed", key: "webchat:w", reason: "open", phase: "pre_link" }
  },
  {
    name: "pre-link abstention without claims lets the request through, visibly",
    config: { allowlist: Allowlists.custom(() => Effect.succeed("abstain")) },
    request: request("telegram", "1"),
    expected: { _tag: "Allowed", key: "telegram:1", reason: "allowlist_abstained_pre_link", phase: "pre_link" }
  },
  {
    name: "requireLink: a challenge asks for sign-in",
    config: { requireLink: true },
    linker: challengeLinker,
    request: request("telegram", "1"),
    expected: { _tag: "LinkRequired", challenge: "c-1", phase: "pre_link" }
  },
  {
    name: "requireLink: a linked identity runs under the person's key",
    config: { requireLink: true },
    linker: linkerWith({}),
    request: request("telegram", "1"),
    expected: { _tag: "Allowed", key: "person:1", reason: "linked", phase: "post_link" }
  },
  {
    name: "requireLink: a channel-chosen conversation key is kept",
    config: { requireLink: true },
    linker: linkerWith({}),
    request: request("telegram", "1", { key: "telegram:group-5" }),
    expected: { _tag: "Allowed", key: "telegram:group-5", reason: "linked", phase: "post_link" }
  },
  {
    name: "requireLink without a linker at run time is a clear denial",
    config: { requireLink: true },
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "link_required_without_linker", phase: "pre_link" }
  },
  {
    name: "claim list: not linked yet asks for sign-in",
    config: { allowlist: staffOnly },
    linker: challengeLinker,
    request: request("telegram", "1"),
    expected: { _tag: "LinkRequired", challenge: "c-1", phase: "pre_link" }
  },
  {
    name: "claim list: linked with the claim is allowed after linking",
    config: { allowlist: staffOnly },
    linker: linkerWith({ group: "staff" }),
    request: request("telegram", "1"),
    expected: { _tag: "Allowed", key: "person:1", reason: "allowlist_allowed_post_link", phase: "post_link" }
  },
  {
    name: "claim list: linked without the claim is denied after linking",
    config: { allowlist: staffOnly },
    linker: linkerWith({ group: "guests" }),
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "allowlist_denied_post_link", phase: "post_link" }
  },
  {
    name: "claim list: claims from the channel decide without a linker",
    config: { allowlist: staffOnly, channels: { telegram: { emitsVerifiedClaims: true } } },
    request: request("telegram", "1", { attributes: { verifiedClaims: { group: ["x", "staff"] } } }),
    expected: { _tag: "Allowed", key: "telegram:1", reason: "allowlist_allowed_post_link", phase: "post_link" }
  },
  {
    name: "claim list: claims from a channel not trusted to emit them are ignored",
    config: { allowlist: staffOnly },
    request: request("telegram", "1", { attributes: { verifiedClaims: { group: "staff" } } }),
    expected: { _tag: "Denied", reason: "allowlist_requires_link", phase: "pre_link" }
  },
  {
    name: "claim list with requireLink: channel claims do not replace sign-in",
    config: { allowlist: staffOnly, requireLink: true, channels: { telegram: { emitsVerifiedClaims: true } } },
    linker: challengeLinker,
    request: request("telegram", "1", { attributes: { verifiedClaims: { group: "staff" } } }),
    expected: { _tag: "LinkRequired", challenge: "c-1", phase: "pre_link" }
  },
  {
    name: "a linker key that is not a valid isolation key is refused",
    config: { requireLink: true },
    linker: IdentityLinker.make(() => Effect.succeed(IdentityLinker.linked("bad\u0000key"))),
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "invalid_identity", phase: "post_link" }
  },
  {
    name: "post-link abstention is a named denial",
    config: {
      allowlist: Allowlists.custom(() => Effect.succeed("abstain"), { requiresLinkedClaims: true })
    },
    linker: linkerWith({}),
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "allowlist_abstained_post_link", phase: "post_link" }
  },
  {
    name: "a failing loader denies with a retryable reason, not a crash",
    config: { allowlist: Allowlists.nativeIds(Effect.dieMessage("directory down")) },
    request: request("telegram", "1"),
    expected: { _tag: "Denied", reason: "authorization_unavailable", phase: "pre_link" }
  },
  {
    name: "an identity that cannot form a key is denied",
    config: Authorization.open,
    request: request("telegram", "x".repeat(300)),
    expected: { _tag: "Denied", reason: "invalid_identity", phase: "pre_link" }
  }
]

describe("Authorization", () => {
  describe("decisions", () => {
    for (const c of cases) {
      it.effect(c.name, () =>
        Effect.gen(function*() {
          const { auth } = yield* setup(c.config, c.linker === undefined ? {} : { linker: c.linker })
          assert.deepStrictEqual(summary(yield* auth.decide(c.request)), c.expected)
        }))
    }
  })

  it.effect("the registry key replaces a default key, never a key the channel chose", () =>
    Effect.gen(function*() {
      const { auth, store } = yield* setup(Authorization.open)
      yield* store.recordIdentity(
        "person:ann",
        { channel: "telegram", nativeId: "1" } as ChannelIdentity,
        Time.fromMillis(0)
      )
      const byDefault = yield* auth.authorize(request("telegram", "1", { key: "telegram:1" }))
      assert.strictEqual(byDefault.session?.isolationKey, "person:ann")
      const none = yield* auth.authorize(request("telegram", "1"))
      assert.strictEqual(none.session?.isolationKey, "person:ann")
      const group = yield* auth.authorize(request("telegram", "1", { key: "telegram:group-9" }))
      assert.strictEqual(group.session?.isolationKey, "telegram:group-9")
      const stranger = yield* auth.authorize(request("telegram", "2"))
      assert.strictEqual(stranger.session?.isolationKey, "telegram:2")
    }))

  it.effect("authorize fails with AccessDenied or LinkRequiredError, and counts denials", () =>
    Effect.gen(function*() {
      const { auth } = yield* setup(allowEnv)
      const counter = Authorization.deniedCounterFor("telegram", "allowlist_denied_pre_link")
      const before = (yield* Metric.value(counter)).count
      const error = yield* Effect.flip(auth.authorize(request("telegram", "99")))
      assert.strictEqual(error._tag, "AccessDenied")
      if (error._tag === "AccessDenied") {
        assert.strictEqual(error.reasonCode, "allowlist_denied_pre_link")
        assert.strictEqual(error.message, "You don't have access to this bot.")
      }
      assert.strictEqual((yield* Metric.value(counter)).count, before + 1)

      const linking = yield* setup({ requireLink: true }, {
        linker: IdentityLinker.make(() =>
          Effect.succeed(
            IdentityLinker.challenge({ challengeId: "c1", url: "https://sign.in/c1", expiresAt: Time.fromMillis(1000) })
          )
        )
      })
      const link = yield* Effect.flip(linking.auth.authorize(request("telegram", "1")))
      assert.strictEqual(link._tag, "LinkRequiredError")
      if (link._tag === "LinkRequiredError") {
        assert.strictEqual(link.url, "https://sign.in/c1")
        assert.strictEqual(link.expiresAt, 1000)
        assert.include(link.message, "https://sign.in/c1")
      }
    }))

  describe("validation", () => {
    const fails = (
      config: AuthorizationConfig,
      channel: string,
      options: {
        readonly linker?: IdentityLinkerShape
        readonly channels?: ReadonlyArray<readonly [string, ChannelKind]>
      } = {}
    ) =>
      Effect.gen(function*() {
        const { auth } = yield* setup(config, options)
        const names = (options.channels ?? defaultChannels).map(([name]) => name)
        const error = yield* Effect.flip(auth.validate(names))
        assert.strictEqual(error._tag, "HostConfigurationError")
        assert.strictEqual(error.channel, channel)
        return error.message
      })
    const passes = (config: AuthorizationConfig, options: { readonly linker?: IdentityLinkerShape } = {}) =>
      Effect.gen(function*() {
        const { auth } = yield* setup(config, options)
        yield* auth.validate(defaultChannels.map(([name]) => name))
      })

    it.effect("a claim-based allowlist needs a claim source", () =>
      Effect.gen(function*() {
        const message = yield* fails({ allowlist: staffOnly }, "telegram")
        assert.include(message, "claim-based")
        yield* fails({ channels: { webchat: { allowlist: Allowlists.anyOf(Allowlists.allOf(staffOnly)) } } }, "webchat")
        yield* passes({ allowlist: staffOnly }, { linker: challengeLinker })
        yield* passes({
          allowlist: staffOnly,
          channels: { telegram: { emitsVerifiedClaims: true }, webchat: { emitsVerifiedClaims: true } }
        })
        // A programmatic channel does not inherit a default that does not name it.
        yield* passes({
          allowlist: staffOnly,
          channels: { telegram: { allowlist: "open" }, webchat: { allowlist: Allowlists.denyAll } }
        })
      }))

    it.effect("requireLink needs a linker", () =>
      Effect.gen(function*() {
        const message = yield* fails({ requireLink: true }, "telegram")
        assert.include(message, "requireLink")
        yield* fails({ channels: { invocations: { requireLink: true } } }, "invocations")
        yield* passes({ requireLink: true }, { linker: challengeLinker })
      }))

    it.effect("a channel-scoped list must name an existing channel, nested lists included", () =>
      Effect.gen(function*() {
        const nested = Allowlists.anyOf(
          Allowlists.nativeIds(["1"], { channel: "telegram" }),
          Allowlists.allOf(Allowlists.anyOf(Allowlists.nativeIds(["2"], { channel: "telgram" })))
        )
        const message = yield* fails({ allowlist: nested }, "telgram")
        assert.include(message, "not enabled")
        yield* fails(
          { channels: { webchat: { allowlist: Allowlists.allOf(Allowlists.channelMembers("teams")) } } },
          "teams"
        )
        yield* passes({ allowlist: Allowlists.anyOf(Allowlists.nativeIds(["1"], { channel: "telegram" })) })
      }))

    // An entry for a channel that is not running (README: `AGENT_HOST_ALLOW="telegram:12345,webchat:*"` with no
    // Telegram token) decides nothing: startup warns, naming it, and goes on. A typo fails safe: the intended
    // channel has no entry, so it stays closed (and is warned about too).
    it.effect("an entry for a channel that is not enabled is a warning naming it, not a failure", () =>
      Effect.gen(function*() {
        const logged: Array<string> = []
        const capture = Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ logLevel, message }) => {
            logged.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
          })
        )
        const webchatOnly: ReadonlyArray<readonly [string, ChannelKind]> = [
          ["webchat", "chat"],
          ["invocations", "programmatic"]
        ]
        const readme = Either.getOrThrow(Authorization.parseAllow("telegram:12345,webchat:*"))
        const { auth } = yield* setup(readme, { channels: webchatOnly })
        yield* auth.validate(webchatOnly.map(([name]) => name)).pipe(Effect.provide(capture))
        const warning = logged.find((line) => line.includes("\"telegram\""))
        assert.isDefined(warning)
        assert.match(warning!, /^WARN authorization is configured for channel "telegram", which is not enabled/)
        const allowed = yield* auth.authorize(request("webchat", "anyone"))
        assert.strictEqual(allowed.channel, "webchat")

        logged.length = 0
        const typo = Either.getOrThrow(Authorization.parseAllow("telegram:1,webchta:*"))
        const typoSetup = yield* setup(typo)
        yield* typoSetup.auth.validate(defaultChannels.map(([name]) => name)).pipe(Effect.provide(capture))
        assert.isTrue(
          logged.some((line) => line.startsWith("WARN authorization is configured for channel \"webchta\""))
        )
        assert.isTrue(logged.some((line) => line.startsWith("WARN channel \"webchat\" is CLOSED")))
        const denied = yield* Effect.flip(typoSetup.auth.authorize(request("webchat", "anyone")))
        assert.strictEqual(denied._tag, "AccessDenied")

        yield* passes({ channels: { discord: { allowlist: "open" } } })
      }))
  })

  it.effect("startup warns about every open chat channel, and about closed ones", () =>
    Effect.gen(function*() {
      const logged: Array<string> = []
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => {
          logged.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
        })
      )
      const validate = (config: AuthorizationConfig) =>
        Effect.flatMap(setup(config), ({ auth }) => auth.validate(defaultChannels.map(([name]) => name))).pipe(
          Effect.provide(capture)
        )
      yield* validate(Authorization.open)
      assert.deepStrictEqual(logged.map((line) => line.split(":")[0]), [
        "WARN channel \"telegram\" is OPEN",
        "WARN channel \"webchat\" is OPEN"
      ])
      logged.length = 0
      yield* validate(Either.getOrThrow(Authorization.parseAllow("webchat:*")))
      assert.strictEqual(logged.length, 2)
      assert.include(logged[0], "WARN channel \"telegram\" is CLOSED")
      assert.include(logged[1], "INFO channel \"webchat\" is open to everyone by configuration")
    }))

  describe("AGENT_HOST_ALLOW", () => {
    it("parses entries and rejects malformed ones", () => {
      const parsed = Either.getOrThrow(Authorization.parseAllow(" telegram:12345 ,webchat:*,, telegram:a:b "))
      assert.strictEqual(parsed.allowlist, Allowlists.denyAll)
      assert.deepStrictEqual(Object.keys(parsed.channels ?? {}).sort(), ["telegram", "webchat"])
      assert.strictEqual(parsed.channels?.webchat?.allowlist, "open")
      for (const bad of ["telegram", "telegram:", ":1", "Telegram:1", "tele gram:1"]) {
        assert.isTrue(Either.isLeft(Authorization.parseAllow(bad)), bad)
      }
    })

    it.effect("reads the environment: unset is open, set is an allowlist, garbage is a config error", () =>
      Effect.gen(function*() {
        const read = (env: Record<string, string>) =>
          Effect.withConfigProvider(Authorization.config, ConfigProvider.fromMap(new Map(Object.entries(env))))
        assert.strictEqual(yield* read({}), Authorization.open)
        const set = yield* read({ AGENT_HOST_ALLOW: "telegram:1" })
        assert.strictEqual(set.allowlist, Allowlists.denyAll)
        const error = yield* Effect.flip(read({ AGENT_HOST_ALLOW: "nonsense" }))
        assert.include(String(error), "AGENT_HOST_ALLOW")
      }))
  })
})
