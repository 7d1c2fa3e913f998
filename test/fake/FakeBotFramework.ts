/**
 * A fake Azure Bot Service on 127.0.0.1 for tests, in the real wire format: the Bot Framework's OpenID metadata
 * and JWKS (keys with `endorsements`), a tenant's Entra keys, the Entra token endpoint (client credentials), and
 * the Bot Connector (`POST /v3/conversations[/{id}/activities[/{replyToId}]]`, answering `{ id }`, 201 for a
 * stream's first chunk). It signs real RS256 tokens for inbound activities, records every connector call, and
 * fails calls on demand (429 with Retry-After, 403 ContentStreamNotAllowed).
 */
import type { Scope } from "effect"
import { Clock, Effect } from "effect"
import * as Jose from "jose"
import * as Http from "node:http"

export const APP_ID = "00000000-aaaa-bbbb-cccc-000000000001"
export const APP_PASSWORD = "fake-client-secret"
export const TENANT_ID = "11111111-2222-3333-4444-555555555555"
export const BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"

export interface ConnectorCall {
  readonly method: string
  readonly path: string
  readonly conversationId: string | undefined
  readonly replyToId: string | undefined
  readonly authorization: string | undefined
  readonly body: Record<string, unknown>
  /** What the fake answered: the status and the id it gave the activity (set once answered). */
  answer?: { readonly status: number; readonly id?: string }
}

export interface ScriptedError {
  readonly status: number
  readonly code?: string
  readonly retryAfter?: string
  /** Only calls matching this fail (default every connector call). */
  readonly when?: (call: ConnectorCall) => boolean
  /** How many calls fail (default 1). */
  readonly times?: number
}

export interface SignOptions {
  /** Claims replacing (or, with `undefined`, removing) the defaults. */
  readonly claims?: Record<string, unknown>
  /** `published` (default), `entra` (the tenant's key), or `rogue` (a key the metadata does not list). */
  readonly key?: "published" | "entra" | "rogue" | "rotated"
  /** The kid in the header (default the key's own). */
  readonly kid?: string
  /** Seconds since the epoch the token is issued at (default now, from `Clock`). */
  readonly now?: number
}

/** A file the fake serves at GET `path` (attachments users send). */
export interface ServedFile {
  readonly bytes?: Uint8Array
  readonly contentType?: string
  /** Only with a connector token (Teams' inline images). */
  readonly auth?: boolean
  /** Answers 302 to this URL instead. */
  readonly redirect?: string
}

export interface Download {
  readonly path: string
  readonly authorization: string | undefined
}

export interface FakeBotFramework {
  readonly url: string
  /** The service URL activities carry (the connector's base, with the trailing slash Azure sends). */
  readonly serviceUrl: string
  readonly metadataUrl: string
  readonly calls: ReadonlyArray<ConnectorCall>
  /** Connector sends (activities), in order. */
  readonly sent: () => ReadonlyArray<ConnectorCall>
  /** How many tokens the token endpoint issued. */
  readonly tokensIssued: () => number
  readonly jwksFetches: () => number
  /** Serves `file` at GET `path`. */
  readonly serveFile: (path: string, file: ServedFile) => void
  /** Every GET of a served (or unknown) file path, in order. */
  readonly downloads: ReadonlyArray<Download>
  readonly fail: (error: ScriptedError) => void
  /** Holds the answers to connector calls matching `when` (recorded at once) until `release` is called. */
  readonly hold: (when: (call: ConnectorCall) => boolean) => { readonly release: () => void }
  /** An inbound token for an activity to `serviceUrl`. */
  readonly sign: (options?: SignOptions) => Effect.Effect<string>
  /** Publishes another key (rollover): tokens signed with it carry kid `rotated`. */
  readonly rotate: () => Effect.Effect<void>
  /** Waits (real time, at most `timeoutMillis`) until `condition` holds; checked on every call. */
  readonly waitUntil: (condition: () => boolean, timeoutMillis?: number) => Effect.Effect<void>
  /** Waits until at least `count` activities were sent. */
  readonly waitForSent: (count: number, timeoutMillis?: number) => Effect.Effect<ReadonlyArray<ConnectorCall>>
}

const readBody = (request: Http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    request.on("error", reject)
  })

interface KeyPair {
  readonly kid: string
  readonly privateKey: Jose.CryptoKey
  readonly jwk: Jose.JWK
}

const keyPair = async (kid: string): Promise<KeyPair> => {
  const { privateKey, publicKey } = await Jose.generateKeyPair("RS256", { extractable: true })
  return { kid, privateKey, jwk: { ...(await Jose.exportJWK(publicKey)), kid, use: "sig" } }
}

// RSA key generation takes seconds on a loaded machine: every fake in a test file shares one set of keys.
let sharedKeys: Promise<ReadonlyArray<KeyPair>> | undefined
const keys = () =>
  sharedKeys ??= Promise.all([keyPair("bf-key-1"), keyPair("entra-key-1"), keyPair("rogue-key"), keyPair("rotated")])

export const make = (
  options: { readonly endorsements?: ReadonlyArray<string> } = {}
): Effect.Effect<FakeBotFramework, never, Scope.Scope> =>
  Effect.gen(function*() {
    const [published, entra, rogue, rotated] = (yield* Effect.promise(keys)) as [KeyPair, KeyPair, KeyPair, KeyPair]
    const endorsements = options.endorsements ?? ["msteams", "webchat", "directline", "emulator"]
    const publishedKeys: Array<Jose.JWK> = [{ ...published.jwk, endorsements } as Jose.JWK]
    const calls: Array<ConnectorCall> = []
    const scripted: Array<ScriptedError & { remaining: number }> = []
    const listeners = new Set<() => void>()
    const issuedTokens = new Set<string>()
    let tokensIssued = 0
    let jwksFetches = 0
    let nextId = 1
    const streams = new Set<string>()
    const files = new Map<string, ServedFile>()
    const holds: Array<{ readonly when: (call: ConnectorCall) => boolean; readonly released: Promise<void> }> = []
    const downloads: Array<Download> = []

    const notify = () => {
      for (const listener of [...listeners]) listener()
    }

    const send = (
      response: Http.ServerResponse,
      status: number,
      body: unknown,
      headers: Record<string, string> = {}
    ) => {
      response.writeHead(status, { "content-type": "application/json", ...headers })
      response.end(JSON.stringify(body))
    }

    const server = Http.createServer((request, response) => {
      void (async () => {
        const url = new URL(request.url ?? "/", "http://fake")
        const path = url.pathname
        const text = await readBody(request)
        if (request.method === "GET" && path === "/v1/.well-known/openidconfiguration") {
          return send(response, 200, {
            issuer: BOT_FRAMEWORK_ISSUER,
            jwks_uri: `http://127.0.0.1:${port()}/v1/.well-known/keys`,
            id_token_signing_alg_values_supported: ["RS256"]
          })
        }
        if (request.method === "GET" && path === "/v1/.well-known/keys") {
          jwksFetches++
          return send(response, 200, { keys: publishedKeys })
        }
        if (request.method === "GET" && path === `/${TENANT_ID}/discovery/v2.0/keys`) {
          return send(response, 200, { keys: [entra.jwk] })
        }
        const tokenMatch = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path)
        if (request.method === "POST" && tokenMatch !== null) {
          const form = new URLSearchParams(text)
          if (
            form.get("grant_type") !== "client_credentials" || form.get("client_id") !== APP_ID ||
            form.get("client_secret") !== APP_PASSWORD || form.get("scope") !== "https://api.botframework.com/.default"
          ) {
            return send(response, 401, { error: "invalid_client", error_description: "bad credentials" })
          }
          tokensIssued++
          const token = `connector-token-${tokensIssued}-${tokenMatch[1]}`
          issuedTokens.add(token)
          return send(response, 200, { token_type: "Bearer", expires_in: 3600, access_token: token })
        }
        const connectorMatch = /^\/v3\/conversations(?:\/([^/]+)\/activities(?:\/([^/]+))?)?$/.exec(path)
        if (request.method === "POST" && connectorMatch !== null) {
          const body = JSON.parse(text) as Record<string, unknown>
          const call: ConnectorCall = {
            method: request.method,
            path,
            conversationId: connectorMatch[1] === undefined ? undefined : decodeURIComponent(connectorMatch[1]),
            replyToId: connectorMatch[2] === undefined ? undefined : decodeURIComponent(connectorMatch[2]),
            authorization: request.headers.authorization,
            body
          }
          const token = (request.headers.authorization ?? "").replace(/^Bearer /, "")
          if (!issuedTokens.has(token)) {
            return send(response, 401, { error: { code: "Unauthorized", message: "bad token" } })
          }
          calls.push(call)
          const held = holds.find((h) => h.when(call))
          if (held !== undefined) {
            notify()
            await held.released
          }
          const failure = scripted.find((s) => s.remaining > 0 && (s.when === undefined || s.when(call)))
          if (failure !== undefined) {
            failure.remaining--
            call.answer = { status: failure.status }
            notify()
            return send(
              response,
              failure.status,
              { error: { code: failure.code ?? "Error", message: "scripted failure" } },
              failure.retryAfter === undefined ? {} : { "retry-after": failure.retryAfter }
            )
          }
          const answer = (status: number, id: string) => {
            call.answer = { status, id }
            notify()
            send(response, status, { id })
          }
          if (call.conversationId === undefined) return answer(201, `a:created-${nextId++}`)
          const id = `activity-${nextId++}`
          const entities = Array.isArray(body.entities) ? (body.entities as Array<Record<string, unknown>>) : []
          const info = entities.find((e) => e.type === "streaminfo")
          if (info !== undefined && info.streamId === undefined) {
            streams.add(id)
            return answer(201, id)
          }
          return answer(info === undefined ? 200 : 202, id)
        }
        if (request.method === "GET") {
          downloads.push({ path, authorization: request.headers.authorization })
          notify()
          const file = files.get(path)
          if (file !== undefined && file.redirect !== undefined) {
            response.writeHead(302, { location: file.redirect })
            return response.end()
          }
          const token = (request.headers.authorization ?? "").replace(/^Bearer /, "")
          if (file !== undefined && file.auth === true && !issuedTokens.has(token)) {
            return send(response, 401, { error: { code: "Unauthorized", message: "bad token" } })
          }
          if (file !== undefined) {
            const bytes = file.bytes ?? new Uint8Array()
            response.writeHead(200, {
              "content-type": file.contentType ?? "application/octet-stream",
              "content-length": String(bytes.byteLength)
            })
            return response.end(bytes)
          }
        }
        send(response, 404, { error: { code: "NotFound", message: `${request.method} ${path}` } })
      })().catch((e: unknown) => send(response, 400, { error: { code: "BadRequest", message: String(e) } }))
    })

    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    const port = () => (server.address() as { port: number }).port
    const url = `http://127.0.0.1:${port()}`
    const serviceUrl = `${url}/`

    const sign = (signOptions: SignOptions = {}) =>
      Effect.flatMap(Clock.currentTimeMillis, (millis) =>
        Effect.promise(async () => {
          const pair = signOptions.key === "entra" ?
            entra :
            signOptions.key === "rogue" ?
            rogue :
            signOptions.key === "rotated" ?
            rotated :
            published
          const now = signOptions.now ?? Math.floor(millis / 1000)
          const claims: Record<string, unknown> = {
            iss: BOT_FRAMEWORK_ISSUER,
            aud: APP_ID,
            serviceurl: serviceUrl,
            iat: now,
            nbf: now,
            exp: now + 3600,
            ...signOptions.claims
          }
          for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k]
          return new Jose.SignJWT(claims as Jose.JWTPayload)
            .setProtectedHeader({ alg: "RS256", typ: "JWT", kid: signOptions.kid ?? pair.kid })
            .sign(pair.privateKey)
        }))

    const rotate = () =>
      Effect.promise(async () => {
        publishedKeys.push({ ...rotated.jwk, endorsements } as Jose.JWK)
      })

    const waitUntil = (condition: () => boolean, timeoutMillis = 5000) =>
      Effect.async<void>((resume) => {
        const check = () => {
          if (condition()) {
            cleanup()
            resume(Effect.void)
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          resume(Effect.dieMessage(`timed out waiting on the fake Bot Framework (${calls.length} calls)`))
        }, timeoutMillis)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
        return Effect.sync(cleanup)
      })

    const sent = () => calls.filter((c) => c.conversationId !== undefined)

    return {
      url,
      serviceUrl,
      metadataUrl: `${url}/v1/.well-known/openidconfiguration`,
      calls,
      sent,
      tokensIssued: () => tokensIssued,
      jwksFetches: () => jwksFetches,
      serveFile: (path, file) => void files.set(path, file),
      hold: (when) => {
        let release = () => {}
        const released = new Promise<void>((resolve) => {
          release = resolve
        })
        holds.push({ when, released })
        return { release }
      },
      downloads,
      fail: (error) => void scripted.push({ ...error, remaining: error.times ?? 1 }),
      sign,
      rotate,
      waitUntil,
      waitForSent: (count, timeoutMillis) => Effect.map(waitUntil(() => sent().length >= count, timeoutMillis), sent)
    }
  })

let nextActivity = 1

/** A message activity from a Teams user in a 1:1 chat (override anything). */
export const message = (
  fake: FakeBotFramework,
  text: string,
  extra: Record<string, unknown> = {}
): Record<string, unknown> => ({
  type: "message",
  id: `in-${nextActivity++}`,
  channelId: "msteams",
  serviceUrl: fake.serviceUrl,
  timestamp: new Date(0).toISOString(),
  from: { id: "29:user-1", name: "Ada", aadObjectId: "aad-user-1" },
  recipient: { id: `28:${APP_ID}`, name: "Bot" },
  conversation: { id: "a:conv-1", conversationType: "personal", tenantId: TENANT_ID },
  channelData: { tenant: { id: TENANT_ID } },
  text,
  ...extra
})

/** Posts an activity to the host with the token (no Authorization header when `token` is null). */
export const post = (hostUrl: string, activity: unknown, token: string | null) =>
  Effect.promise(() =>
    fetch(`${hostUrl}/api/messages`, {
      method: "POST",
      headers: {
        "content-type": "application/json; charset=utf-8",
        ...(token === null ? {} : { authorization: `Bearer ${token}` })
      },
      body: typeof activity === "string" ? activity : JSON.stringify(activity)
    }).then(async (r) => ({ status: r.status, body: await r.text() }))
  )
