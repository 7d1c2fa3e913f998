/**
 * A fake OpenID Connect provider on 127.0.0.1 for tests, speaking the real wire format: discovery
 * (`/.well-known/openid-configuration`), JWKS, `GET /authorize` (signs in the current `user` at once and redirects
 * back with a code, or with `error=access_denied` when `deny` is set) and `POST /token` (checks the client, the
 * redirect URI and the PKCE verifier, and answers an RS256 ID token signed with `jose`, with `auth_time` when the
 * client sent `max_age`: every sign-in here is a fresh one). `tamper` makes the next
 * ID tokens wrong in one way (audience, nonce, issuer, signing key, expiry) to test that the host refuses them.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import type { JWK } from "jose"
import { exportJWK, generateKeyPair, SignJWT } from "jose"
import { createHash, randomBytes } from "node:crypto"
import * as Http from "node:http"

export interface FakeUser {
  readonly sub: string
  readonly email?: string
  readonly email_verified?: boolean
  readonly groups?: ReadonlyArray<string>
  readonly name?: string
}

export interface Tamper {
  readonly audience?: string
  readonly nonce?: string
  readonly issuer?: string
  /** Sign with a key that is not in the JWKS. */
  readonly foreignKey?: boolean
  /** Seconds from now (negative: already expired). */
  readonly expiresIn?: number
}

export interface FakeIdp {
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string
  /** Who signs in at the next `/authorize`. */
  user: FakeUser
  /** The next `/authorize` answers `error=access_denied`. */
  deny: boolean
  tamper: Tamper | undefined
  /** Query parameters of every `/authorize` request. */
  readonly authorizeRequests: ReadonlyArray<URLSearchParams>
  /** Form parameters of every `/token` request. */
  readonly tokenRequests: ReadonlyArray<URLSearchParams>
}

interface Grant {
  readonly redirectUri: string
  readonly challenge: string
  readonly nonce: string | null
  readonly user: FakeUser
  /** When the person signed in (epoch seconds): sent as `auth_time` when the client asked for `max_age`. */
  readonly authTime: number | undefined
}

const readBody = (request: Http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    request.on("error", reject)
  })

export const make = (options: { readonly clientId?: string; readonly clientSecret?: string } = {}): Effect.Effect<
  FakeIdp,
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const keys = yield* Effect.promise(() => generateKeyPair("RS256"))
    const foreign = yield* Effect.promise(() => generateKeyPair("RS256"))
    const jwk: JWK = {
      ...(yield* Effect.promise(() => exportJWK(keys.publicKey))),
      kid: "k1",
      alg: "RS256",
      use: "sig"
    }
    const grants = new Map<string, Grant>()
    const authorizeRequests: Array<URLSearchParams> = []
    const tokenRequests: Array<URLSearchParams> = []
    let issuer = ""

    const send = (
      response: Http.ServerResponse,
      status: number,
      body: unknown,
      headers: Record<string, string> = {}
    ) => {
      response.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers })
      response.end(JSON.stringify(body))
    }

    const fake: FakeIdp = {
      issuer: "",
      clientId: options.clientId ?? "agent-host-test",
      clientSecret: options.clientSecret ?? "client-secret-1",
      user: { sub: "user-1", email: "ada@example.com", email_verified: true, groups: ["agents-users"], name: "Ada" },
      deny: false,
      tamper: undefined,
      authorizeRequests,
      tokenRequests
    }

    const handle = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      const url = new URL(request.url ?? "/", issuer)
      if (request.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
        return send(response, 200, {
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
          code_challenge_methods_supported: ["S256"],
          token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"]
        })
      }
      if (request.method === "GET" && url.pathname === "/jwks") return send(response, 200, { keys: [jwk] })
      if (request.method === "GET" && url.pathname === "/authorize") {
        const params = url.searchParams
        authorizeRequests.push(params)
        const redirect = new URL(params.get("redirect_uri") ?? "http://invalid.test/")
        redirect.searchParams.set("state", params.get("state") ?? "")
        if (fake.deny) {
          redirect.searchParams.set("error", "access_denied")
        } else {
          if (params.get("client_id") !== fake.clientId || params.get("code_challenge_method") !== "S256") {
            return send(response, 400, { error: "invalid_request" })
          }
          const code = randomBytes(16).toString("hex")
          grants.set(code, {
            redirectUri: params.get("redirect_uri")!,
            challenge: params.get("code_challenge") ?? "",
            nonce: params.get("nonce"),
            user: fake.user,
            authTime: params.has("max_age") ? Math.floor(Date.now() / 1000) : undefined
          })
          redirect.searchParams.set("code", code)
        }
        response.writeHead(302, { location: redirect.href })
        return response.end()
      }
      if (request.method === "POST" && url.pathname === "/token") {
        const form = new URLSearchParams(await readBody(request))
        tokenRequests.push(form)
        const basic = request.headers.authorization
        let clientId = form.get("client_id")
        let secret = form.get("client_secret")
        if (basic?.startsWith("Basic ")) {
          const [id, pw] = Buffer.from(basic.slice(6), "base64").toString("utf8").split(":")
          clientId = decodeURIComponent(id ?? "")
          secret = decodeURIComponent(pw ?? "")
        }
        if (clientId !== fake.clientId || (secret !== null && secret !== fake.clientSecret)) {
          return send(response, 401, { error: "invalid_client" })
        }
        const grant = grants.get(form.get("code") ?? "")
        grants.delete(form.get("code") ?? "")
        if (grant === undefined || form.get("grant_type") !== "authorization_code") {
          return send(response, 400, { error: "invalid_grant" })
        }
        const verifier = form.get("code_verifier") ?? ""
        const challenge = createHash("sha256").update(verifier).digest("base64url")
        if (grant.redirectUri !== form.get("redirect_uri") || challenge !== grant.challenge) {
          return send(response, 400, { error: "invalid_grant", error_description: "redirect_uri or PKCE mismatch" })
        }
        const tamper = fake.tamper
        const now = Math.floor(Date.now() / 1000)
        const { sub, ...claims } = grant.user
        const nonce = tamper?.nonce ?? grant.nonce
        const idToken = await new SignJWT({
          ...claims,
          ...(nonce === null ? {} : { nonce }),
          ...(grant.authTime === undefined ? {} : { auth_time: grant.authTime })
        })
          .setProtectedHeader({ alg: "RS256", kid: "k1" })
          .setIssuer(tamper?.issuer ?? issuer)
          .setSubject(sub)
          .setAudience(tamper?.audience ?? fake.clientId)
          .setIssuedAt(now)
          .setExpirationTime(now + (tamper?.expiresIn ?? 300))
          .sign(tamper?.foreignKey === true ? foreign.privateKey : keys.privateKey)
        return send(response, 200, {
          access_token: randomBytes(16).toString("hex"),
          token_type: "Bearer",
          expires_in: 300,
          id_token: idToken
        })
      }
      return send(response, 404, { error: "not_found" })
    }

    const server = Http.createServer((request, response) => {
      handle(request, response).catch((error) => send(response, 500, { error: String(error) }))
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const address = server.address() as { port: number }
    issuer = `http://127.0.0.1:${address.port}`
    ;(fake as { issuer: string }).issuer = issuer
    return fake
  })

/** The confirmation page's form (`GET /link/start`): where it posts, and the state it carries. */
export const confirmForm = (html: string): { readonly action: string; readonly state: string } | undefined => {
  const action = /<form method="post" action="([^"]*)">/.exec(html)?.[1]
  const state = /<input type="hidden" name="state" value="([^"]*)">/.exec(html)?.[1]
  const unescape = (s: string) =>
    s.replace(/&quot;/g, "\"").replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&")
  return action === undefined || state === undefined ? undefined : { action: unescape(action), state: unescape(state) }
}

const postConfirm = async (html: string, origin: string) => {
  const form = confirmForm(html)
  if (form === undefined) throw new Error(`no confirmation form in: ${html}`)
  return fetch(form.action, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin, "sec-fetch-site": "same-origin" },
    body: new URLSearchParams({ state: form.state }).toString()
  })
}

/** Presses the confirmation page's button as a browser would (a form post from the host's own page). */
export const confirm = (html: string, origin: string) => Effect.promise(() => postConfirm(html, origin))

/**
 * What a browser does with a sign-in link: the confirmation page and its button, the provider, the callback, with
 * the cookie carried over.
 */
export const signIn = (url: string) =>
  Effect.promise(async () => {
    const page = await fetch(url, { redirect: "manual", headers: { accept: "text/html" } })
    const html = await page.text()
    if (page.status !== 200) return { status: page.status, body: html, stage: "confirm" as const }
    const start = await postConfirm(html, new URL(url).origin)
    if (start.status !== 303) return { status: start.status, body: await start.text(), stage: "start" as const }
    const cookie = (start.headers.get("set-cookie") ?? "").split(";")[0]!
    const authorize = await fetch(start.headers.get("location")!, { redirect: "manual" })
    if (authorize.status !== 302) {
      return { status: authorize.status, body: await authorize.text(), stage: "authorize" as const }
    }
    const callbackUrl = authorize.headers.get("location")!
    const callback = await fetch(callbackUrl, { redirect: "manual", headers: { cookie, accept: "application/json" } })
    return { status: callback.status, body: await callback.text(), stage: "callback" as const, callbackUrl, cookie }
  })

/** GETs `url` as the browser would (JSON answers), with an optional cookie. */
export const get = (url: string, cookie?: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      redirect: "manual",
      headers: { accept: "application/json", ...(cookie === undefined ? {} : { cookie }) }
    })
    return { status: response.status, body: await response.text() }
  })
