/**
 * A fake Discord REST API on 127.0.0.1 for tests, speaking the real wire format under `/api/v10`: application
 * commands (`GET`/`PUT /applications/{id}/commands`, bot token required), the interaction webhook
 * (`PATCH /webhooks/{app}/{token}/messages/@original`, follow-ups `POST /webhooks/{app}/{token}`; expired tokens
 * answer 401 code 50027), channel messages (`POST /channels/{id}/messages`, 2,000 characters at most, nonces
 * deduped with `enforce_nonce`), DM channels (`POST /users/@me/channels`), `X-RateLimit-*` headers on every
 * answer and scripted failures such as 429 with `retry_after` and `global`.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import * as Http from "node:http"

export interface Call {
  readonly method: string
  /** Below /api/v10, e.g. `/channels/1/messages`. */
  readonly path: string
  readonly body: unknown
  readonly authorization: string | undefined
  readonly userAgent: string | undefined
}

export interface Message {
  readonly id: string
  readonly channel_id: string
  readonly content: string
  readonly flags: number | undefined
  readonly nonce: string | undefined
  /** How it was sent: editing the deferred response, a follow-up, or a channel message with the bot token. */
  readonly via: "original" | "followup" | "channel"
  /** The interaction token for `original`/`followup`. */
  readonly token: string | undefined
}

export interface ScriptedFailure {
  readonly status: number
  readonly code?: number
  readonly message?: string
  /** For 429: seconds (a float), in the body and the Retry-After header. */
  readonly retryAfter?: number
  readonly global?: boolean
  /** How many matching calls fail (default 1). */
  readonly times?: number
  /** Only calls whose JSON body matches fail (default: every call to the route). */
  readonly when?: (body: Record<string, unknown>) => boolean
}

export interface RateLimitState {
  readonly remaining: number
  /** Seconds until the bucket resets (a float). */
  readonly resetAfter: number
}

export interface Options {
  readonly applicationId?: string
  readonly botToken?: string
}

export interface FakeDiscord {
  /** The API base to configure (DISCORD_API_BASE): `http://127.0.0.1:<port>/api/v10`. */
  readonly url: string
  readonly applicationId: string
  readonly botToken: string
  readonly calls: ReadonlyArray<Call>
  readonly callsTo: (method: string, pathPattern: RegExp) => ReadonlyArray<Call>
  readonly messages: ReadonlyArray<Message>
  /** The commands Discord holds now (as it returns them, with ids and versions). */
  readonly commands: () => ReadonlyArray<Record<string, unknown>>
  /** The DM channel id the fake opens for a user. */
  readonly dmChannelOf: (userId: string) => string
  /** Makes an interaction token invalid from now on (as after its 15 minutes). */
  readonly expireToken: (token: string) => void
  /** Fails the next matching calls. */
  readonly fail: (method: string, pathPattern: RegExp, failure: ScriptedFailure) => void
  /** The `X-RateLimit-Remaining`/`-Reset-After` the fake reports for matching calls (default 4 and 1 s). */
  readonly rateLimit: (method: string, pathPattern: RegExp, state: RateLimitState) => void
  /** Waits (real time, at most `timeoutMillis`) until `condition` holds; checked on every call. */
  readonly waitUntil: (condition: () => boolean, timeoutMillis?: number) => Effect.Effect<void>
}

const readBody = (request: Http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

export const make = (options: Options = {}): Effect.Effect<FakeDiscord, never, Scope.Scope> =>
  Effect.gen(function*() {
    const applicationId = options.applicationId ?? "1100000000000000001"
    const botToken = options.botToken ?? "MTEwMDAw.fake-BOT-token.secret_0123456789"
    const calls: Array<Call> = []
    const messages: Array<Message> = []
    let commands: Array<Record<string, unknown>> = []
    const dmChannels = new Map<string, string>()
    const expired = new Set<string>()
    const originals = new Map<string, string>()
    const nonces = new Map<string, Message>()
    const failures: Array<{ method: string; pattern: RegExp; failure: ScriptedFailure; remaining: number }> = []
    const limits: Array<{ method: string; pattern: RegExp; state: RateLimitState }> = []
    const listeners = new Set<() => void>()
    let nextId = 1_200_000_000_000_000_000n

    const snowflake = () => String(nextId++)

    const send = (
      response: Http.ServerResponse,
      status: number,
      body: unknown,
      headers: Record<string, string> = {}
    ) => {
      response.writeHead(status, { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) })
      response.end(body === undefined ? undefined : JSON.stringify(body))
    }

    const rateHeaders = (method: string, path: string): Record<string, string> => {
      const state = limits.find((l) => l.method === method && l.pattern.test(path))?.state ??
        { remaining: 4, resetAfter: 1 }
      return {
        "x-ratelimit-limit": "5",
        "x-ratelimit-remaining": String(state.remaining),
        "x-ratelimit-reset": String(Date.now() / 1000 + state.resetAfter),
        "x-ratelimit-reset-after": String(state.resetAfter),
        "x-ratelimit-bucket": Buffer.from(`${method} ${path.replace(/\d{5,}/g, ":id")}`).toString("hex").slice(0, 32)
      }
    }

    const addMessage = (
      channelId: string,
      body: Record<string, unknown>,
      via: Message["via"],
      token?: string
    ): Message => {
      const message: Message = {
        id: snowflake(),
        channel_id: channelId,
        content: String(body.content ?? ""),
        flags: typeof body.flags === "number" ? body.flags : undefined,
        nonce: typeof body.nonce === "string" ? body.nonce : undefined,
        via,
        token
      }
      messages.push(message)
      return message
    }

    const wire = (message: Message) => ({
      id: message.id,
      type: 0,
      channel_id: message.channel_id,
      content: message.content,
      flags: message.flags ?? 0,
      ...(message.nonce === undefined ? {} : { nonce: message.nonce })
    })

    const invalidForm = (response: Http.ServerResponse, headers: Record<string, string>, what: string) =>
      send(
        response,
        400,
        { message: "Invalid Form Body", code: 50035, errors: { content: { _errors: [what] } } },
        headers
      )

    const handle = (call: Call, response: Http.ServerResponse) => {
      const { method, path } = call
      const headers = rateHeaders(method, path)
      const body = call.body !== null && typeof call.body === "object" ? call.body as Record<string, unknown> : {}
      const scripted = failures.find((f) =>
        f.remaining > 0 && f.method === method && f.pattern.test(path) &&
        (f.failure.when === undefined || f.failure.when(body))
      )
      if (scripted !== undefined) {
        scripted.remaining--
        const f = scripted.failure
        if (f.status === 429) {
          const retryAfter = f.retryAfter ?? 1
          return send(response, 429, {
            message: "You are being rate limited.",
            retry_after: retryAfter,
            global: f.global === true,
            ...(f.code === undefined ? {} : { code: f.code })
          }, {
            ...headers,
            "x-ratelimit-remaining": "0",
            "retry-after": String(Math.ceil(retryAfter)),
            "x-ratelimit-scope": f.global === true ? "global" : "user",
            ...(f.global === true ? { "x-ratelimit-global": "true" } : {})
          })
        }
        return send(response, f.status, { message: f.message ?? `HTTP ${f.status}`, code: f.code ?? 0 }, headers)
      }
      const botAuthorized = call.authorization === `Bot ${botToken}`
      const unauthorized = () => send(response, 401, { message: "401: Unauthorized", code: 0 }, headers)

      const commandsMatch = /^\/applications\/(\d+)\/commands$/.exec(path)
      if (commandsMatch !== null) {
        if (!botAuthorized) return unauthorized()
        if (commandsMatch[1] !== applicationId) return send(response, 403, { message: "Missing Access", code: 50001 })
        if (method === "GET") return send(response, 200, commands, headers)
        if (method === "PUT" && Array.isArray(call.body)) {
          commands = (call.body as Array<Record<string, unknown>>).map((c) => ({
            id: snowflake(),
            application_id: applicationId,
            version: snowflake(),
            default_member_permissions: null,
            type: 1,
            nsfw: false,
            contexts: null,
            integration_types: [0],
            ...c,
            // Discord leaves `required` out when it is false.
            options: Array.isArray(c.options) ?
              (c.options as Array<Record<string, unknown>>).map(({ required, ...o }) =>
                required === true ? { ...o, required } : o
              ) :
              undefined
          }))
          return send(response, 200, commands, headers)
        }
      }

      const webhook = /^\/webhooks\/(\d+)\/([^/]+)(\/messages\/@original)?$/.exec(path)
      if (webhook !== null) {
        const token = decodeURIComponent(webhook[2]!)
        if (webhook[1] !== applicationId) return send(response, 404, { message: "Unknown Webhook", code: 10015 })
        if (expired.has(token)) return send(response, 401, { message: "Invalid Webhook Token", code: 50027 }, headers)
        const content = String(body.content ?? "")
        if (content.length > 2000) return invalidForm(response, headers, "Must be 2000 or fewer in length.")
        if (webhook[3] !== undefined && method === "PATCH") {
          const existing = originals.get(token)
          const message = addMessage("interaction", body, "original", token)
          if (existing !== undefined) {
            const index = messages.findIndex((m) => m.id === existing)
            messages.splice(index, 1)
          }
          originals.set(token, message.id)
          return send(response, 200, wire(message), headers)
        }
        if (webhook[3] === undefined && method === "POST") {
          return send(response, 200, wire(addMessage("interaction", body, "followup", token)), headers)
        }
      }

      const channel = /^\/channels\/(\d+)\/messages$/.exec(path)
      if (channel !== null && method === "POST") {
        if (!botAuthorized) return unauthorized()
        const content = String(body.content ?? "")
        if (content.length === 0) return invalidForm(response, headers, "Cannot send an empty message")
        if (content.length > 2000) return invalidForm(response, headers, "Must be 2000 or fewer in length.")
        const nonce = typeof body.nonce === "string" ? body.nonce : undefined
        if (nonce !== undefined && nonce.length > 25) return invalidForm(response, headers, "nonce too long")
        const seen = nonce === undefined || body.enforce_nonce !== true ? undefined : nonces.get(nonce)
        if (seen !== undefined) return send(response, 200, wire(seen), headers)
        const message = addMessage(channel[1]!, body, "channel")
        if (nonce !== undefined) nonces.set(nonce, message)
        return send(response, 200, wire(message), headers)
      }

      if (path === "/users/@me/channels" && method === "POST") {
        if (!botAuthorized) return unauthorized()
        const recipient = String(body.recipient_id ?? "")
        if (!/^\d+$/.test(recipient)) return invalidForm(response, headers, "recipient_id is required")
        const id = dmChannels.get(recipient) ?? snowflake()
        dmChannels.set(recipient, id)
        return send(response, 200, { id, type: 1, recipients: [{ id: recipient, username: "someone" }] }, headers)
      }
      return send(response, 404, { message: "404: Not Found", code: 0 })
    }

    const server = Http.createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1")
      if (!url.pathname.startsWith("/api/v10/")) return send(response, 404, { message: "404: Not Found", code: 0 })
      readBody(request).then((raw) => {
        let body: unknown = undefined
        if (raw.length > 0) {
          try {
            body = JSON.parse(raw.toString("utf8"))
          } catch {
            return send(response, 400, { message: "400: Bad Request", code: 50109 })
          }
        }
        const call: Call = {
          method: request.method ?? "GET",
          path: url.pathname.slice("/api/v10".length),
          body,
          authorization: request.headers.authorization,
          userAgent: request.headers["user-agent"]
        }
        calls.push(call)
        handle(call, response)
        for (const listener of [...listeners]) listener()
      }, () => send(response, 400, { message: "400: Bad Request", code: 0 }))
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
    const address = server.address() as { port: number }

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
          resume(
            Effect.dieMessage(
              `timed out waiting on the fake Discord API; calls: ${
                calls.map((c) => `${c.method} ${c.path}`).join(", ")
              }`
            )
          )
        }, timeoutMillis)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
        return Effect.sync(cleanup)
      })

    const fake: FakeDiscord = {
      url: `http://127.0.0.1:${address.port}/api/v10`,
      applicationId,
      botToken,
      calls,
      callsTo: (method, pattern) => calls.filter((c) => c.method === method && pattern.test(c.path)),
      messages,
      commands: () => commands,
      dmChannelOf: (userId) => {
        const id = dmChannels.get(userId) ?? snowflake()
        dmChannels.set(userId, id)
        return id
      },
      expireToken: (token) => void expired.add(token),
      fail: (method, pattern, failure) =>
        void failures.push({ method, pattern, failure, remaining: failure.times ?? 1 }),
      rateLimit: (method, pattern, state) => void limits.unshift({ method, pattern, state }),
      waitUntil
    }
    return fake
  })
