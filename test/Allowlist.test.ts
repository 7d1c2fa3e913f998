import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import type { Allowlist, AllowlistDecision, AuthorizationContext, VerifiedClaims } from "../src/auth/Allowlist.js"
import * as Allowlists from "../src/auth/Allowlist.js"
import type { ChannelIdentity } from "../src/domain/Identity.js"

const identity = (channel: string, nativeId: string) => ({ channel, nativeId }) as ChannelIdentity

const context = (
  who: ChannelIdentity,
  phase: AuthorizationContext["phase"],
  verifiedClaims: VerifiedClaims = {}
): AuthorizationContext => ({
  identity: who,
  phase,
  isolationKey: `${who.channel}:${who.nativeId}`,
  verifiedClaims,
  claimSource: Object.keys(verifiedClaims).length > 0 ? "linker" : "none"
})

const abstain = Allowlists.custom(() => Effect.succeed("abstain"))
const tg1 = identity("telegram", "1")
const tg3 = identity("telegram", "3")
const web1 = identity("webchat", "1")
const staff = { group: "staff" }

interface Row {
  readonly name: string
  readonly list: Allowlist
  readonly who: ChannelIdentity
  readonly claims?: VerifiedClaims
  /** Expected [pre_link, post_link]. */
  readonly expected: readonly [AllowlistDecision, AllowlistDecision]
}

const claimList = Allowlists.linkedClaim("group", ["staff", "ops"])

const table: ReadonlyArray<Row> = [
  { name: "allowAll", list: Allowlists.allowAll, who: tg1, expected: ["allow", "allow"] },
  { name: "denyAll", list: Allowlists.denyAll, who: tg1, expected: ["deny", "deny"] },
  {
    name: "channelMembers, its channel",
    list: Allowlists.channelMembers("telegram"),
    who: tg1,
    expected: ["allow", "allow"]
  },
  {
    name: "channelMembers, another channel",
    list: Allowlists.channelMembers("telegram"),
    who: web1,
    expected: ["abstain", "abstain"]
  },
  { name: "nativeIds, listed", list: Allowlists.nativeIds(["1", "2"]), who: tg1, expected: ["allow", "allow"] },
  { name: "nativeIds, unlisted", list: Allowlists.nativeIds(["1", "2"]), who: tg3, expected: ["deny", "deny"] },
  {
    name: "nativeIds unscoped, any channel",
    list: Allowlists.nativeIds(["1"]),
    who: web1,
    expected: ["allow", "allow"]
  },
  {
    name: "nativeIds scoped, listed",
    list: Allowlists.nativeIds(["1"], { channel: "telegram" }),
    who: tg1,
    expected: ["allow", "allow"]
  },
  {
    name: "nativeIds scoped, unlisted",
    list: Allowlists.nativeIds(["1"], { channel: "telegram" }),
    who: tg3,
    expected: ["deny", "deny"]
  },
  {
    name: "nativeIds scoped, other channel",
    list: Allowlists.nativeIds(["1"], { channel: "telegram" }),
    who: web1,
    expected: ["abstain", "abstain"]
  },
  {
    name: "nativeIds from a loader",
    list: Allowlists.nativeIds(Effect.succeed(["3"]), { channel: "telegram" }),
    who: tg3,
    expected: ["allow", "allow"]
  },
  { name: "linkedClaim, matching", list: claimList, who: tg1, claims: staff, expected: ["abstain", "allow"] },
  {
    name: "linkedClaim, other value",
    list: claimList,
    who: tg1,
    claims: { group: "guests" },
    expected: ["abstain", "deny"]
  },
  { name: "linkedClaim, claim missing", list: claimList, who: tg1, claims: {}, expected: ["abstain", "deny"] },
  {
    name: "linkedClaim, multi-valued intersecting",
    list: claimList,
    who: tg1,
    claims: { group: ["guests", "ops"] },
    expected: ["abstain", "allow"]
  },
  {
    name: "linkedClaim, multi-valued disjoint",
    list: claimList,
    who: tg1,
    claims: { group: ["guests", "visitors"] },
    expected: ["abstain", "deny"]
  },
  {
    name: "linkedClaim, empty multi-value",
    list: claimList,
    who: tg1,
    claims: { group: [] },
    expected: ["abstain", "deny"]
  },
  {
    name: "linkedClaim, single value form",
    list: Allowlists.linkedClaim("tier", "gold"),
    who: tg1,
    claims: { tier: "gold" },
    expected: ["abstain", "allow"]
  },
  { name: "anyOf empty", list: Allowlists.anyOf(), who: tg1, expected: ["abstain", "abstain"] },
  { name: "allOf empty", list: Allowlists.allOf(), who: tg1, expected: ["abstain", "abstain"] },
  {
    name: "anyOf(ids, claim), listed",
    list: Allowlists.anyOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg1,
    expected: ["allow", "allow"]
  },
  {
    name: "anyOf(ids, claim), unlisted with claim",
    list: Allowlists.anyOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg3,
    claims: staff,
    expected: ["abstain", "allow"]
  },
  {
    name: "anyOf(ids, claim), unlisted without claim",
    list: Allowlists.anyOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg3,
    expected: ["abstain", "deny"]
  },
  {
    name: "allOf(ids, claim), listed with claim",
    list: Allowlists.allOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg1,
    claims: staff,
    expected: ["abstain", "allow"]
  },
  {
    name: "allOf(ids, claim), listed without claim",
    list: Allowlists.allOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg1,
    expected: ["abstain", "deny"]
  },
  {
    name: "allOf(ids, claim), unlisted",
    list: Allowlists.allOf(Allowlists.nativeIds(["1"]), claimList),
    who: tg3,
    claims: staff,
    expected: ["deny", "deny"]
  },
  {
    name: "anyOf of channel-scoped lists, unlisted on one",
    list: Allowlists.anyOf(
      Allowlists.nativeIds(["1"], { channel: "telegram" }),
      Allowlists.nativeIds(["9"], { channel: "webchat" })
    ),
    who: tg3,
    expected: ["abstain", "abstain"]
  },
  {
    name: "custom reading the phase",
    list: Allowlists.custom((ctx) => Effect.succeed(ctx.phase === "pre_link" ? "abstain" : "allow"), {
      requiresLinkedClaims: true
    }),
    who: tg1,
    expected: ["abstain", "allow"]
  }
]

describe("Allowlist", () => {
  describe("every allowlist in both phases", () => {
    for (const row of table) {
      it.effect(row.name, () =>
        Effect.gen(function*() {
          const pre = yield* Allowlists.evaluate(row.list, context(row.who, "pre_link", row.claims))
          const post = yield* Allowlists.evaluate(row.list, context(row.who, "post_link", row.claims))
          assert.deepStrictEqual([pre, post], [...row.expected])
        }))
    }
  })

  it("knows which lists need verified claims and which channels they name", () => {
    assert.isFalse(Allowlists.requiresLinkedClaims(Allowlists.allowAll))
    assert.isFalse(Allowlists.requiresLinkedClaims(Allowlists.nativeIds(["1"])))
    assert.isTrue(Allowlists.requiresLinkedClaims(claimList))
    assert.isTrue(Allowlists.requiresLinkedClaims(Allowlists.anyOf(Allowlists.denyAll, Allowlists.allOf(claimList))))
    assert.isFalse(Allowlists.requiresLinkedClaims(Allowlists.custom(() => Effect.succeed("allow"))))
    assert.isTrue(
      Allowlists.requiresLinkedClaims(Allowlists.custom(() => Effect.succeed("allow"), { requiresLinkedClaims: true }))
    )
    const nested = Allowlists.anyOf(
      Allowlists.nativeIds(["1"], { channel: "telegram" }),
      Allowlists.allOf(
        Allowlists.channelMembers("webchat"),
        Allowlists.anyOf(Allowlists.nativeIds(["2"], { channel: "teams" }))
      )
    )
    assert.deepStrictEqual([...Allowlists.namedChannels(nested)].sort(), ["teams", "telegram", "webchat"])
  })

  it.effect("forChannel drops parts scoped to other channels", () =>
    Effect.gen(function*() {
      const list = Allowlists.anyOf(
        Allowlists.nativeIds(["1"], { channel: "telegram" }),
        Allowlists.allOf(Allowlists.nativeIds(["9"], { channel: "webchat" }))
      )
      const forTelegram = Allowlists.forChannel(list, "telegram")!
      // Unpruned, the webchat part abstains and lets the unlisted Telegram user through by abstention.
      assert.strictEqual(yield* Allowlists.evaluate(list, context(tg3, "pre_link")), "abstain")
      assert.strictEqual(yield* Allowlists.evaluate(forTelegram, context(tg3, "pre_link")), "deny")
      assert.strictEqual(yield* Allowlists.evaluate(forTelegram, context(tg1, "pre_link")), "allow")
      assert.isUndefined(Allowlists.forChannel(list, "teams"))
      assert.isUndefined(Allowlists.forChannel(Allowlists.nativeIds(["1"], { channel: "telegram" }), "webchat"))
      const unscoped = Allowlists.nativeIds(["1"])
      assert.strictEqual(Allowlists.forChannel(unscoped, "webchat"), unscoped)
      assert.deepStrictEqual(Allowlists.forChannel(Allowlists.anyOf(), "webchat"), Allowlists.anyOf())
    }))

  it.effect("a loader runs once, shared by concurrent callers; a failed load is retried", () =>
    Effect.gen(function*() {
      let loads = 0
      const list = Allowlists.nativeIds(
        Effect.suspend(() => {
          loads++
          return Effect.as(Effect.yieldNow(), ["1"])
        })
      )
      const decisions = yield* Effect.all(
        Array.from({ length: 5 }, () => Allowlists.evaluate(list, context(tg1, "pre_link"))),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(decisions, ["allow", "allow", "allow", "allow", "allow"])
      assert.strictEqual(yield* Allowlists.evaluate(list, context(tg3, "pre_link")), "deny")
      assert.strictEqual(loads, 1)

      let attempts = 0
      const flaky = Allowlists.nativeIds(
        Effect.suspend(() => ++attempts === 1 ? Effect.dieMessage("store down") : Effect.succeed(["1"]))
      )
      const first = yield* Effect.exit(Allowlists.evaluate(flaky, context(tg1, "pre_link")))
      assert.strictEqual(first._tag, "Failure")
      assert.strictEqual(yield* Allowlists.evaluate(flaky, context(tg1, "pre_link")), "allow")
      assert.strictEqual(attempts, 2)
    }))

  describe("anyOf / allOf algebra", () => {
    const decisionList: Record<AllowlistDecision, Allowlist> = {
      allow: Allowlists.allowAll,
      deny: Allowlists.denyAll,
      abstain
    }
    const leaf = FastCheck.constantFrom<AllowlistDecision>("allow", "deny", "abstain").map((d) => decisionList[d])
    const { tree } = FastCheck.letrec<{ tree: Allowlist }>((tie) => ({
      tree: FastCheck.oneof(
        { depthSize: "small", maxDepth: 3, withCrossShrink: true },
        leaf,
        FastCheck.array(tie("tree"), { maxLength: 3 }).map((c) => Allowlists.anyOf(...c)),
        FastCheck.array(tie("tree"), { maxLength: 3 }).map((c) => Allowlists.allOf(...c))
      )
    }))
    const phase = FastCheck.constantFrom<AuthorizationContext["phase"]>("pre_link", "post_link")
    const ev = (list: Allowlist, p: AuthorizationContext["phase"]) => Allowlists.evaluate(list, context(tg1, p))
    const { allOf, allowAll, anyOf, denyAll } = Allowlists

    // The reference semantics, written as plainly as possible.
    const model = (list: Allowlist): AllowlistDecision => {
      if (list === abstain) return "abstain"
      if (list._tag === "AllowAll") return "allow"
      if (list._tag === "DenyAll") return "deny"
      if (list._tag !== "AnyOf" && list._tag !== "AllOf") throw new Error("unexpected list")
      const values = list.children.map(model)
      if (values.length === 0) return "abstain"
      if (list._tag === "AnyOf") {
        return values.includes("allow") ? "allow" : values.includes("abstain") ? "abstain" : "deny"
      }
      return values.includes("deny") ? "deny" : values.includes("abstain") ? "abstain" : "allow"
    }

    it.live.prop(
      "evaluation matches the reference model (abstain propagates)",
      [tree, phase],
      ([x, p]) => Effect.map(ev(x, p), (d) => assert.strictEqual(d, model(x)))
    )

    it.live.prop(
      "identities: anyOf(x, deny) = x, allOf(x, allow) = x, singletons = x",
      [tree, phase],
      ([x, p]) =>
        Effect.gen(function*() {
          const value = yield* ev(x, p)
          assert.strictEqual(yield* ev(anyOf(x, denyAll), p), value)
          assert.strictEqual(yield* ev(allOf(x, allowAll), p), value)
          assert.strictEqual(yield* ev(anyOf(x), p), value)
          assert.strictEqual(yield* ev(allOf(x), p), value)
          assert.strictEqual(yield* ev(anyOf(x, x), p), value)
          assert.strictEqual(yield* ev(allOf(x, x), p), value)
        })
    )

    it.live.prop(
      "annihilators: anyOf(x, allow) = allow, allOf(x, deny) = deny",
      [tree, phase],
      ([x, p]) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* ev(anyOf(x, allowAll), p), "allow")
          assert.strictEqual(yield* ev(allOf(denyAll, x), p), "deny")
        })
    )

    it.live.prop(
      "absorption: anyOf(x, allOf(x, y)) = x = allOf(x, anyOf(x, y))",
      [tree, tree, phase],
      ([x, y, p]) =>
        Effect.gen(function*() {
          const value = yield* ev(x, p)
          assert.strictEqual(yield* ev(anyOf(x, allOf(x, y)), p), value)
          assert.strictEqual(yield* ev(allOf(x, anyOf(x, y)), p), value)
        })
    )

    it.live.prop("commutative and associative", [tree, tree, tree, phase], ([x, y, z, p]) =>
      Effect.gen(function*() {
        for (const op of [anyOf, allOf]) {
          assert.strictEqual(yield* ev(op(x, y), p), yield* ev(op(y, x), p))
          const flat = yield* ev(op(x, y, z), p)
          assert.strictEqual(yield* ev(op(x, op(y, z)), p), flat)
          assert.strictEqual(yield* ev(op(op(x, y), z), p), flat)
        }
      }))

    it.live.prop("abstain is never turned into a denial by anyOf, nor into an allow by allOf", [
      FastCheck.array(tree, { minLength: 1, maxLength: 4 }),
      phase
    ], ([xs, p]) =>
      Effect.gen(function*() {
        const values = yield* Effect.forEach(xs, (x) => ev(x, p))
        const any = yield* ev(anyOf(...xs), p)
        const all = yield* ev(allOf(...xs), p)
        if (values.includes("abstain") && !values.includes("allow")) assert.strictEqual(any, "abstain")
        if (values.includes("abstain") && !values.includes("deny")) assert.strictEqual(all, "abstain")
      }))
  })
})
