import { assert, describe, it } from "@effect/vitest"
import type { Layer } from "effect"
import { Cause, ConfigProvider, Duration, Effect, Either, Exit, Option, Redacted, TestClock } from "effect"
import * as Authorization from "../src/auth/Authorization.js"
import * as LinkState from "../src/auth/LinkState.js"
import * as OidcLinker from "../src/auth/OidcLinker.js"
import * as Time from "../src/domain/Time.js"
import * as SqliteStateStore from "../src/state/sqlite/SqliteStateStore.js"
import * as StateStoreModule from "../src/state/StateStore.js"
import * as FakeIdp from "./fake/FakeIdp.js"
import * as LinkHarness from "./fake/LinkHarness.js"
import * as TempDir from "./utils/TempDir.js"
import * as TestChatChannel from "./utils/TestChatChannel.js"

const chat = TestChatChannel.make()

/** A host that requires sign-in on the test chat, linking against `idp`. */
const startHost = (
  idp: FakeIdp.FakeIdp,
  options: {
    readonly store?: Layer.Layer<StateStoreModule.StateStore, unknown>
    readonly port?: number
    readonly oidc?: Parameters<typeof LinkHarness.start>[0]["oidc"]
  } = {}
) =>
  Effect.gen(function*() {
    const port = options.port ?? (yield* LinkHarness.freePort)
    return yield* LinkHarness.start({
      idp,
      channels: [chat],
      authorization: { requireLink: true },
      store: options.store ?? StateStoreModule.layerMemory,
      port,
      ...(options.oidc === undefined ? {} : { oidc: options.oidc })
    })
  })

const say = (h: LinkHarness.LinkHost, user: string, text: string) => h.post("/testchat", { user, text })

/** Asks as `user`, gets the challenge, and returns its link. */
const challengeFor = (h: LinkHarness.LinkHost, user: string) =>
  Effect.gen(function*() {
    const answer = yield* say(h, user, "hello?")
    assert.strictEqual(answer.status, 200)
    assert.isString(answer.body.link, JSON.stringify(answer.body))
    return answer.body.link as string
  })

/** The wall clock: the FakeIdp's `auth_time` comes from it, not from the test's clock. */
const wallClock = () => Date.now()

const errorType = (response: { readonly body: string }) => JSON.parse(response.body).error.type as string

describe("OIDC identity linking", () => {
  it.scoped("links an identity end to end: challenge, provider, callback; then the agent answers", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp, { oidc: { clientSecret: undefined } })
      const link = yield* challengeFor(h, "ada1")
      assert.strictEqual(h.turns.length, 0)
      assert.match(link, /\/link\/start\?state=v1\./)

      const done = yield* FakeIdp.signIn(link)
      assert.strictEqual(done.stage, "callback")
      assert.strictEqual(done.status, 200, done.body)
      assert.strictEqual(JSON.parse(done.body).status, "linked")
      // PKCE and nonce went to the provider; a public client sends no secret.
      const authorize = idp.authorizeRequests[0]!
      assert.strictEqual(authorize.get("code_challenge_method"), "S256")
      assert.isString(authorize.get("nonce"))
      assert.strictEqual(authorize.get("redirect_uri"), `${h.host.url}/link/callback`)
      assert.isNull(idp.tokenRequests[0]!.get("client_secret"))

      const stored = yield* h.store.getLink("testchat", "ada1")
      assert.isTrue(Option.isSome(stored))
      assert.strictEqual(Option.getOrThrow(stored).subject, "user-1")
      assert.deepStrictEqual(Option.getOrThrow(stored).claims.groups, ["agents-users"])
      assert.strictEqual(Option.getOrThrow(stored).claims.email, "ada@example.com")

      const after = yield* say(h, "ada1", "now?")
      assert.strictEqual(after.body.reply, "echo: now?")
      assert.strictEqual(h.turns.length, 1)
      // Another identity is still asked to sign in.
      const other = yield* say(h, "bob22", "me too")
      assert.isString(other.body.link)
    }))

  it.scoped("a client secret is sent with basic auth when configured", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp, { oidc: { clientSecret: Redacted.make(idp.clientSecret) } })
      const done = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      assert.strictEqual(done.status, 200, done.body)
      assert.isNull(idp.tokenRequests[0]!.get("client_secret"))
      // A wrong secret: the provider refuses the code exchange, the page says so.
      const wrong = yield* startHost(idp, { oidc: { clientSecret: Redacted.make("wrong") } })
      const refused = yield* FakeIdp.signIn(yield* challengeFor(wrong, "ada1"))
      assert.strictEqual(refused.status, 400)
      assert.strictEqual(errorType(refused), "token_exchange_failed")
    }))

  it.scoped("a replayed callback, a forged or malformed state and a missing state are refused with 400", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const link = yield* challengeFor(h, "ada1")
      const done = yield* FakeIdp.signIn(link)
      assert.strictEqual(done.status, 200, done.body)
      if (done.stage !== "callback") return assert.fail("no callback")

      const replay = yield* FakeIdp.get(done.callbackUrl, done.cookie)
      assert.strictEqual(replay.status, 400)
      assert.strictEqual(errorType(replay), "state_replayed")

      const state = new URL(link).searchParams.get("state")!
      const [v, payload, mac] = state.split(".")
      const decoded = JSON.parse(Buffer.from(payload!, "base64url").toString("utf8"))
      const other = Buffer.from(JSON.stringify({ ...decoded, n: "mallory" })).toString("base64url")
      const forged = yield* FakeIdp.get(`${h.host.url}/link/start?state=${v}.${other}.${mac}`)
      assert.strictEqual(forged.status, 400)
      assert.strictEqual(errorType(forged), "state_forged")

      const garbage = yield* FakeIdp.get(`${h.host.url}/link/callback?state=nonsense&code=x`)
      assert.strictEqual(garbage.status, 400)
      assert.strictEqual(errorType(garbage), "state_malformed")
      const none = yield* FakeIdp.get(`${h.host.url}/link/callback?code=x`)
      assert.strictEqual(none.status, 400)
      assert.strictEqual(errorType(none), "state_missing")
      // The HTML page for a browser says the same.
      const page = yield* Effect.promise(() =>
        fetch(`${h.host.url}/link/start?state=nonsense`).then(async (r) => ({
          status: r.status,
          type: r.headers.get("content-type"),
          body: await r.text()
        }))
      )
      assert.strictEqual(page.status, 400)
      assert.include(page.type, "text/html")
      assert.include(page.body, "data-status=\"state_malformed\"")
      // Nothing was linked for mallory.
      assert.isTrue(Option.isNone(yield* h.store.getLink("testchat", "mallory")))
    }))

  it.scoped("an expired link is refused (TestClock), a fresh one works", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const link = yield* challengeFor(h, "ada1")
      yield* TestClock.adjust("11 minutes")
      const expired = yield* FakeIdp.get(link)
      assert.strictEqual(expired.status, 400)
      assert.strictEqual(errorType(expired), "state_expired")
      const fresh = yield* challengeFor(h, "ada1")
      const done = yield* FakeIdp.signIn(fresh)
      assert.strictEqual(done.status, 200, done.body)
    }))

  it.scoped("a used state is refused as replayed for its whole life; once its seen row is pruned, its age refuses it", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const link = yield* challengeFor(h, "ada1")
      const done = yield* FakeIdp.signIn(link)
      assert.strictEqual(done.status, 200, done.body)
      if (done.stage !== "callback") return assert.fail("no callback")
      const id = JSON.parse(
        Buffer.from(new URL(link).searchParams.get("state")!.split(".")[1]!, "base64url").toString()
      )
        .j as string
      // Just before the state expires, after a prune: still remembered, so a replay is refused as one.
      yield* TestClock.adjust("9 minutes")
      yield* h.store.pruneSeen(yield* Time.now, 1000)
      const replay = yield* FakeIdp.get(done.callbackUrl, done.cookie)
      assert.strictEqual(errorType(replay), "state_replayed")
      // Past the seen window, pruned: only the state's own expiry is left, and it refuses.
      yield* TestClock.adjust(LinkState.seenWindow)
      yield* h.store.pruneSeen(yield* Time.now, 1000)
      const late = yield* FakeIdp.get(done.callbackUrl, done.cookie)
      assert.strictEqual(late.status, 400)
      assert.strictEqual(errorType(late), "state_expired")
      // The row was gone: marking the id now counts as new.
      assert.isTrue(yield* h.store.markSeen(LinkState.seenNamespace, id, LinkState.seenWindow))
      assert.isTrue(Option.isSome(yield* h.store.getLink("testchat", "ada1")))
    }))

  it.effect("a state that would outlive its seen window is refused at construction", () =>
    Effect.gen(function*() {
      const exit = yield* OidcLinker.make({
        issuer: "https://login.example.com",
        clientId: "c",
        redirectBaseUrl: "https://bot.example.com",
        stateTtl: Duration.sum(LinkState.seenWindow, Duration.minutes(1))
      }).pipe(Effect.provide(StateStoreModule.layerMemory), Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Cause.pretty(Exit.isFailure(exit) ? exit.cause : Cause.empty)), "shorter stateTtl")
      // at the window: fine
      const ok = yield* OidcLinker.make({
        issuer: "https://login.example.com",
        clientId: "c",
        redirectBaseUrl: "https://bot.example.com",
        stateTtl: LinkState.seenWindow
      }).pipe(Effect.provide(StateStoreModule.layerMemory), Effect.exit)
      assert.isTrue(Exit.isSuccess(ok))
    }))

  it.scoped("a sign-in older than maxAge asks the person to sign in again (TestClock); auth_time is a verified claim", () =>
    Effect.gen(function*() {
      // The provider stamps auth_time with the wall clock: the host's clock starts there too.
      yield* TestClock.setTime(wallClock())
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp, { oidc: { maxAge: "1 hour" } })
      const done = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      assert.strictEqual(done.status, 200, done.body)
      // The provider was asked to re-authenticate anyone who signed in over an hour ago.
      assert.strictEqual(idp.authorizeRequests[0]!.get("max_age"), "3600")
      const fresh = yield* say(h, "ada1", "hello")
      assert.strictEqual(fresh.body.reply, "echo: hello")
      const authTime = Number(h.turns[0]!.context.verified?.claims.auth_time)
      assert.approximately(authTime, wallClock() / 1000, 60)

      yield* TestClock.adjust("59 minutes")
      assert.strictEqual((yield* say(h, "ada1", "still fine")).body.reply, "echo: still fine")

      yield* TestClock.adjust("2 minutes")
      const stale = yield* say(h, "ada1", "and now?")
      assert.isString(stale.body.link, JSON.stringify(stale.body))
      assert.include(stale.body.reply, "older than 1h")
      assert.include(stale.body.reply, "sign in again")
      assert.strictEqual(h.turns.length, 2)
      // The link is kept (whoami still shows it); signing in again makes it fresh.
      assert.isTrue(Option.isSome(yield* h.store.getLink("testchat", "ada1")))
      // The provider stamps the new sign-in with the wall clock; the host's clock goes back to it.
      yield* TestClock.setTime(wallClock())
      const again = yield* FakeIdp.signIn(stale.body.link)
      assert.strictEqual(again.status, 200, again.body)
      assert.strictEqual((yield* say(h, "ada1", "back")).body.reply, "echo: back")
    }))

  it.scoped("without auth_time a link's age counts from when it was made", () =>
    Effect.gen(function*() {
      const link = {
        channel: "testchat",
        nativeId: "ada1",
        isolationKey: "testchat:ada1",
        subject: "user-1",
        claims: { sub: "user-1" },
        linkedAt: Time.fromMillis(5_000)
      }
      assert.strictEqual(OidcLinker.signedInAt(link), 5_000)
      assert.strictEqual(OidcLinker.signedInAt({ ...link, claims: { auth_time: "7" } }), 7_000)
      assert.strictEqual(OidcLinker.signedInAt({ ...link, claims: { auth_time: "soon" } }), 5_000)
    }))

  it.effect("OidcLinker.config: none without an issuer; the settings, AGENT_HOST_LINK_MAX_AGE included; missing parts named", () =>
    Effect.gen(function*() {
      const read = (env: Record<string, string>) =>
        Effect.either(Effect.withConfigProvider(
          OidcLinker.config,
          ConfigProvider.fromMap(new Map(Object.entries(env)))
        ))
      assert.isTrue(Option.isNone(Either.getOrThrow(yield* read({}))))
      const base = {
        AGENT_HOST_OIDC_ISSUER: "https://login.example.com",
        AGENT_HOST_OIDC_CLIENT_ID: "agent-host",
        AGENT_HOST_OIDC_REDIRECT_BASE_URL: "https://bot.example.com"
      }
      const settings = Option.getOrThrow(
        Either.getOrThrow(yield* read({ ...base, AGENT_HOST_LINK_MAX_AGE: "12 hours" }))
      )
      assert.strictEqual(Duration.toHours(Duration.decode(settings.maxAge!)), 12)
      assert.isUndefined(Option.getOrThrow(Either.getOrThrow(yield* read(base))).maxAge)
      const bad = yield* read({ ...base, AGENT_HOST_LINK_MAX_AGE: "a while" })
      assert.include(String(Either.getLeft(bad).pipe(Option.getOrThrow)), "AGENT_HOST_LINK_MAX_AGE")
      const noClient = yield* read({ AGENT_HOST_OIDC_ISSUER: "https://login.example.com" })
      assert.include(String(Either.getLeft(noClient).pipe(Option.getOrThrow)), "AGENT_HOST_OIDC_CLIENT_ID")
    }))

  it.scoped("opening a link shows a page naming the identity; only its button's POST goes on to the provider", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const link = yield* challengeFor(h, "ada1")
      const opened = yield* Effect.promise(() =>
        fetch(link, { redirect: "manual" }).then(async (r) => ({
          status: r.status,
          headers: r.headers,
          body: await r.text()
        }))
      )
      assert.strictEqual(opened.status, 200)
      assert.include(opened.body, "data-status=\"confirm\"")
      assert.include(opened.body, "Link testchat user ada1 to your account?")
      assert.include(opened.body, `<form method="post" action="${h.host.url}/link/start">`)
      assert.include(opened.headers.get("content-security-policy") ?? "", "frame-ancestors 'none'")
      // A GET alone neither reaches the provider nor binds the browser.
      assert.isNull(opened.headers.get("location"))
      assert.isNull(opened.headers.get("set-cookie"))
      assert.strictEqual(idp.authorizeRequests.length, 0)
      // A JSON client is told the same.
      const asJson = yield* FakeIdp.get(link)
      assert.strictEqual(asJson.status, 200)
      assert.strictEqual(JSON.parse(asJson.body).status, "confirm")

      // Another site's page posting the form for the visitor: refused, nothing started.
      const post = (headers: Record<string, string>, body: string) =>
        Effect.promise(() =>
          fetch(`${h.host.url}/link/start`, {
            method: "POST",
            redirect: "manual",
            headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json", ...headers },
            body
          }).then(async (r) => ({ status: r.status, body: await r.text() }))
        )
      const state = FakeIdp.confirmForm(opened.body)!.state
      const form = new URLSearchParams({ state }).toString()
      const fromElsewhere = yield* post({ origin: "https://evil.example" }, form)
      assert.strictEqual(fromElsewhere.status, 403)
      assert.strictEqual(errorType(fromElsewhere), "cross_site_post")
      const crossSite = yield* post({ "sec-fetch-site": "cross-site" }, form)
      assert.strictEqual(crossSite.status, 403)
      // A page that hides where it is (`Origin: null`) is not this host's page either; this host's page does not
      // hide it (its referrer policy keeps the origin on same-origin posts).
      assert.strictEqual((yield* post({ origin: "null" }, form)).status, 403)
      assert.strictEqual(opened.headers.get("referrer-policy"), "same-origin")
      // A post without a state, or with a forged one, is refused like a GET would be.
      assert.strictEqual(errorType(yield* post({ origin: h.host.url }, "")), "state_missing")
      assert.strictEqual(errorType(yield* post({ origin: h.host.url }, `state=${state}x`)), "state_forged")
      const huge = yield* post({ origin: h.host.url }, `state=${"a".repeat(20_000)}`)
      assert.strictEqual(huge.status, 413)
      assert.strictEqual(idp.authorizeRequests.length, 0)

      // The button: on to the provider (303), the browser bound by the cookie.
      const pressed = yield* FakeIdp.confirm(opened.body, h.host.url)
      assert.strictEqual(pressed.status, 303)
      assert.isTrue(pressed.headers.get("location")!.startsWith(`${idp.issuer}/authorize?`))
      assert.include(pressed.headers.get("set-cookie") ?? "", "HttpOnly")
    }))

  it.scoped("the confirmation page escapes the identity it names", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const offer = yield* h.linker.linking!.offer({
        channel: "testchat",
        nativeId: "\"><script>alert(1)</script>",
        attributes: { username: "<img src=x onerror=alert(2)>&" }
      } as never)
      const body = yield* Effect.promise(() => fetch(offer.url).then((r) => r.text()))
      assert.notInclude(body, "<script>")
      assert.notInclude(body, "<img")
      assert.include(body, "@&lt;img src=x onerror=alert(2)&gt;&amp; (&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;)")
      // The escaped form still carries the exact state.
      assert.strictEqual(FakeIdp.confirmForm(body)!.state, new URL(offer.url).searchParams.get("state"))
    }))

  it.scoped("a callback in another browser (no cookie) is refused without using the state up", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const link = yield* challengeFor(h, "ada1")
      const confirmation = yield* Effect.promise(() => fetch(link).then((r) => r.text()))
      const start = yield* FakeIdp.confirm(confirmation, h.host.url)
      const cookie = (start.headers.get("set-cookie") ?? "").split(";")[0]!
      assert.include(start.headers.get("set-cookie") ?? "", "HttpOnly")
      const authorize = yield* Effect.promise(() => fetch(start.headers.get("location")!, { redirect: "manual" }))
      const callback = authorize.headers.get("location")!
      const elsewhere = yield* FakeIdp.get(callback)
      assert.strictEqual(elsewhere.status, 400)
      assert.strictEqual(errorType(elsewhere), "state_mismatched")
      const here = yield* FakeIdp.get(callback, cookie)
      assert.strictEqual(here.status, 200, here.body)
    }))

  it.scoped("an ID token with the wrong audience, nonce, issuer or signature links nothing", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      const cases: ReadonlyArray<FakeIdp.Tamper> = [
        { audience: "someone-else" },
        { nonce: "not-the-nonce" },
        { issuer: "http://evil.test" },
        { foreignKey: true },
        { expiresIn: -600 }
      ]
      for (const tamper of cases) {
        idp.tamper = tamper
        const done = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
        assert.strictEqual(done.status, 400, `${JSON.stringify(tamper)}: ${done.body}`)
        assert.strictEqual(errorType(done), "id_token_invalid", JSON.stringify(tamper))
      }
      assert.isTrue(Option.isNone(yield* h.store.getLink("testchat", "ada1")))
      idp.tamper = undefined
      idp.deny = true
      const denied = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      assert.strictEqual(denied.status, 400)
      assert.strictEqual(errorType(denied), "provider_refused")
      idp.deny = false
      const ok = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      assert.strictEqual(ok.status, 200, ok.body)
    }))

  it.scoped("a required verified email refuses an unverified one with 403", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp, { oidc: { requireVerifiedEmail: true } })
      idp.user = { sub: "user-2", email: "eve@example.com", email_verified: false }
      const done = yield* FakeIdp.signIn(yield* challengeFor(h, "eve01"))
      assert.strictEqual(done.status, 403)
      assert.strictEqual(errorType(done), "email_not_verified")
      assert.isTrue(Option.isNone(yield* h.store.getLink("testchat", "eve01")))
    }))

  it.scoped("unlink removes the link: the next message is challenged again", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp)
      yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      const linking = h.linker.linking!
      const identity = { channel: "testchat", nativeId: "ada1" } as never
      const view = yield* linking.linkOf(identity)
      assert.strictEqual(Option.getOrThrow(view).subject, "user-1")
      assert.isTrue(yield* linking.unlink(identity))
      assert.isFalse(yield* linking.unlink(identity))
      const again = yield* say(h, "ada1", "still me")
      assert.isString(again.body.link)
    }))

  it.scoped("a link survives a restart (SQLite state dir reopened), and so does the state key", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const dir = yield* TempDir.make()
      const port = yield* LinkHarness.freePort
      const store = () => SqliteStateStore.layer({ directory: dir })
      const pending = yield* Effect.scoped(Effect.gen(function*() {
        const first = yield* startHost(idp, { store: store(), port })
        const done = yield* FakeIdp.signIn(yield* challengeFor(first, "ada1"))
        assert.strictEqual(done.status, 200, done.body)
        return yield* challengeFor(first, "bob22")
      }))
      const second = yield* startHost(idp, { store: store(), port })
      const answer = yield* say(second, "ada1", "remember me?")
      assert.strictEqual(answer.body.reply, "echo: remember me?")
      // A link issued before the restart still completes after it.
      const done = yield* FakeIdp.signIn(pending)
      assert.strictEqual(done.status, 200, done.body)
    }))

  it.scoped("AGENT_HOST_ALLOW claim entries decide on verified claims; the claims reach the request context", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const port = yield* LinkHarness.freePort
      const authorization = Either.getOrThrow(
        Authorization.parseAllow("claim:groups=agents-users,claim:groups=admins,testchat:owner1")
      )
      const h = yield* LinkHarness.start({
        idp,
        channels: [chat],
        authorization,
        store: StateStoreModule.layerMemory,
        port
      })
      // A listed id needs no sign-in (and carries no claims).
      const owner = yield* say(h, "owner1", "hi")
      assert.strictEqual(owner.body.reply, "echo: hi")
      assert.isUndefined(h.turns[0]!.context.verified)

      // Someone in agents-users: challenged, links, then allowed with the claims in the context.
      const done = yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))
      assert.strictEqual(done.status, 200, done.body)
      const allowed = yield* say(h, "ada1", "what can I do?")
      assert.strictEqual(allowed.body.reply, "echo: what can I do?")
      const turn = h.turns[1]!
      assert.strictEqual(turn.context.verified?.source, "linker")
      assert.deepStrictEqual(turn.context.verified?.claims.groups, ["agents-users"])
      assert.strictEqual(turn.context.verified?.claims.email, "ada@example.com")
      assert.strictEqual(turn.text, "what can I do?")

      // Someone outside the groups links fine but is refused after it, by name.
      idp.user = { sub: "user-9", email: "mallory@example.com", email_verified: true, groups: ["guests"] }
      const other = yield* FakeIdp.signIn(yield* challengeFor(h, "mal01"))
      assert.strictEqual(other.status, 200, other.body)
      const refused = yield* say(h, "mal01", "let me in")
      assert.strictEqual(refused.body.denied, "allowlist_denied_post_link")
      assert.strictEqual(h.turns.length, 2)
    }))

  it.effect("AGENT_HOST_ALLOW and AGENT_HOST_REQUIRE_LINK parse; bad entries name themselves", () =>
    Effect.sync(() => {
      const parsed = Either.getOrThrow(Authorization.parseAllow("claim:groups=a,claim:email=x@y.z,telegram:1"))
      assert.strictEqual(
        parsed.allowlist !== undefined && parsed.allowlist !== "open" && parsed.allowlist._tag,
        "AnyOf"
      )
      assert.strictEqual((parsed.channels!.telegram!.allowlist as { _tag: string })._tag, "AnyOf")
      assert.include(
        Either.getLeft(Authorization.parseAllow("claim:groups")).pipe(Option.getOrThrow),
        "claim:<name>=<value>"
      )
      const required = Either.getOrThrow(Authorization.withRequireLink({}, "telegram, webchat"))
      assert.isTrue(required.channels!.telegram!.requireLink)
      assert.isTrue(required.channels!.webchat!.requireLink)
      assert.isTrue(Either.getOrThrow(Authorization.withRequireLink({}, "true")).requireLink)
      assert.isTrue(Either.isLeft(Authorization.withRequireLink({}, "Tele gram!")))
    }))

  it.scoped("one person's linked identities are bounded (all_linked fans out to them): 409 beyond", () =>
    Effect.gen(function*() {
      const idp = yield* FakeIdp.make()
      const h = yield* startHost(idp, { oidc: { linkSessions: true, maxLinksPerPerson: 1 } })
      assert.strictEqual((yield* FakeIdp.signIn(yield* challengeFor(h, "ada1"))).status, 200)
      // Signing in again for the same identity is a relink, not one more.
      assert.strictEqual(
        (yield* FakeIdp.signIn(Option.getOrThrow(
          yield* Effect.map(
            h.linker.linking!.offer({ channel: "testchat", nativeId: "ada1" } as never),
            (offer) => Option.some(offer.url)
          )
        ))).status,
        200
      )
      const second = yield* FakeIdp.signIn(yield* challengeFor(h, "ada2"))
      assert.strictEqual(second.status, 409)
      assert.strictEqual(errorType(second), "too_many_links")
      assert.isTrue(Option.isNone(yield* h.store.getLink("testchat", "ada2")))
    }))
})
