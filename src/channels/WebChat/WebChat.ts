/**
 * The web chat channel: a page at its path (`/` by default) where a person talks to the agent, and the JSON
 * and SSE endpoints the page uses under `<path>/<name>/`:
 * - `POST messages` `{ user, session?, message }` streams the reply as SSE (`start`, `delta`, `done`, `error`;
 *   `error` also when the host's shutdown stops the turn, the user's message is kept in the history);
 * - `GET history?user=&session=` the conversation so far; `POST reset` `{ user, session }` starts a new one;
 * - `GET events?user=` the live pushes for this browser (resumable with `Last-Event-ID`);
 * - `GET account`, `POST link`, `POST unlink`: account linking, when the host has a linker (see `Account`).
 * A browser is the identity `webchat:<user>`; each conversation is the isolation key
 * `webchat:<user>:<session>` (or the trusted chat isolation header, when the host trusts one). A browser linked
 * with shared sessions talks in the person's shared key instead, whatever its session.
 */
import { Config, Duration, Effect, Either, Option, Schedule, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks, RouteInput } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import { isolationKey, issueId } from "../../domain/Ids.js"
import type { Message } from "../../domain/Message.js"
import { responseText, userMessage } from "../../domain/Message.js"
import * as Redact from "../../domain/Redact.js"
import { errorJson, json } from "../../http/HttpBody.js"
import { readJsonObject } from "../../http/JsonObject.js"
import { joinPath } from "../../http/Router.js"
import * as Sse from "../../http/Sse.js"
import { describeTurnError, extraFields, turnErrorJson } from "../../http/TurnErrors.js"
import * as Account from "./Account.js"
import * as Assets from "./Assets.js"
import * as PushHub from "./PushHub.js"

export interface Options {
  readonly name?: string
  /** Where the page is served (default `/`); the endpoints live under `<path>/<name>/`. */
  readonly path?: string
  /** The page title and heading (default "Agent"). */
  readonly title?: string
  /** Longest accepted message, in characters (default 8,000); longer ones get a 413. */
  readonly maxMessageChars?: number
  /** Bounds of the queue that holds pushes for pages that are not open. */
  readonly pushQueue?: Partial<PushHub.Limits>
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
  /** SSE comment sent on a stream silent this long, so proxies keep it open (default 25 seconds). */
  readonly heartbeatInterval?: Duration.DurationInput
}

export const defaultMaxMessageChars = 8_000

/** Options from the environment: `AGENT_HOST_WEBCHAT_PATH`, `_TITLE`, `_MAX_MESSAGE_CHARS`, `_PUSH_TTL_SECONDS`. */
export const config: Config.Config<Options> = Config.all({
  path: Config.string("AGENT_HOST_WEBCHAT_PATH").pipe(Config.withDefault("/")),
  title: Config.string("AGENT_HOST_WEBCHAT_TITLE").pipe(Config.withDefault("Agent")),
  maxMessageChars: Config.integer("AGENT_HOST_WEBCHAT_MAX_MESSAGE_CHARS").pipe(
    Config.withDefault(defaultMaxMessageChars)
  ),
  pushTtlSeconds: Config.integer("AGENT_HOST_WEBCHAT_PUSH_TTL_SECONDS").pipe(Config.withDefault(600))
}).pipe(Config.map(({ pushTtlSeconds, ...rest }) => ({ ...rest, pushQueue: { ttl: `${pushTtlSeconds} seconds` } })))

/** Browser and conversation ids: opaque, URL-safe, 8-64 characters. */
export const idPattern = /^[A-Za-z0-9_-]{8,64}$/

const idProblem = (what: string, value: unknown): string | undefined => {
  if (typeof value !== "string" || value.length === 0) return `${what} is required`
  if (!idPattern.test(value)) return `${what} must be 8-64 characters of A-Z, a-z, 0-9, '_' or '-'`
  return undefined
}

const turnErrorFrame = (error: TurnError) => {
  const parts = describeTurnError(error)
  return Sse.frame(
    JSON.stringify({ error: { type: parts.type, message: parts.message, ...extraFields(parts) } }),
    "error"
  )
}

/** Messages as the page shows them: role and text, user and assistant only. */
export const viewMessages = (messages: ReadonlyArray<Message>) => {
  const out: Array<{ role: "user" | "assistant"; text: string }> = []
  for (const message of messages) {
    if (message.role !== "user" && message.role !== "assistant") continue
    let text = ""
    for (const part of message.contents) if (part._tag === "text") text += part.text
    if (text.length > 0) out.push({ role: message.role, text })
  }
  return out
}

const historyLimit = 500

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "webchat"
  const maxMessageChars = options.maxMessageChars ?? defaultMaxMessageChars
  const heartbeatInterval = options.heartbeatInterval ?? Duration.seconds(25)
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const pagePath = joinPath(options.path ?? "/", "")
      const apiBase = joinPath(pagePath, name)
      const assets = yield* Assets.load({ apiBase, title: options.title ?? "Agent" })
      const hub = yield* PushHub.make(options.pushQueue)
      const heartbeat = yield* Sse.heartbeat(heartbeatInterval)
      yield* Effect.forkScoped(Effect.repeat(hub.sweep, Schedule.spaced("1 minute")))

      const identityOf = (user: string) => ({ channel: name, nativeId: user }) as ChannelIdentity

      /** The conversation's key, and whether it is the person's shared one (their browser is linked). */
      const conversationOf = (input: RouteInput, user: string, session: string) =>
        input.isolation.chat !== undefined ?
          Effect.succeed({ key: input.isolation.chat, shared: false }) :
          Effect.map(Account.sharedKey(ctx.linking, identityOf(user)), (shared) =>
            Option.match(shared, {
              onNone: () => ({ key: `${name}:${user}:${session}`, shared: false }),
              onSome: (key) => ({ key, shared: true })
            }))

      const readBody = (input: RouteInput) =>
        readJsonObject(input.request, ctx.settings).pipe(
          Effect.map((body) => ({ body })),
          Effect.catchAll((problem) =>
            Effect.succeed({ error: errorJson(problem.status, problem.type, problem.message) })
          )
        )

      const page = ChannelModule.handler(({ query, request }) =>
        Effect.succeed(Assets.serve(request, query, assets.page, undefined))
      )
      const script = ChannelModule.handler(({ query, request }) =>
        Effect.succeed(Assets.serve(request, query, assets.script, assets.version))
      )
      const style = ChannelModule.handler(({ query, request }) =>
        Effect.succeed(Assets.serve(request, query, assets.style, assets.version))
      )
      const markdown = ChannelModule.handler(({ query, request }) =>
        Effect.succeed(Assets.serve(request, query, assets.markdown, assets.version))
      )

      const messages = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          const read = yield* readBody(input)
          if ("error" in read) return read.error
          const { message, session: sessionIn, user } = read.body
          const userProblem = idProblem("user", user)
          if (userProblem !== undefined) return errorJson(400, "invalid_user", userProblem)
          if (sessionIn !== undefined && sessionIn !== null) {
            const problem = idProblem("session", sessionIn)
            if (problem !== undefined) return errorJson(400, "invalid_session", problem)
          }
          if (typeof message !== "string" || message.trim().length === 0) {
            return errorJson(400, "invalid_message", "message must be a non-empty string")
          }
          if (message.length > maxMessageChars) {
            return errorJson(
              413,
              "message_too_long",
              `the message is ${message.length} characters long; the limit is ${maxMessageChars}`
            )
          }
          // A session id is a handle on the conversation: it comes from the CSPRNG.
          const session = typeof sessionIn === "string" ? sessionIn : yield* issueId("c")
          const conversation = yield* conversationOf(input, user as string, session)
          const key = isolationKey(conversation.key)
          if (Either.isLeft(key)) return turnErrorJson(key.left)
          // A session minted here (and not named by a trusted header or shared by a link) has nothing stored yet.
          const fresh = sessionIn == null && input.isolation.chat === undefined && !conversation.shared
          const request: ChannelRequest = {
            channel: name,
            operation: "message.create",
            input: [userMessage(message)],
            session: fresh ? { isolationKey: key.right, fresh } : { isolationKey: key.right },
            identity: identityOf(user as string),
            attributes: { session_id: session },
            stream: true
          }
          const started = yield* ctx.runStream(request, read.body).pipe(Effect.either)
          if (started._tag === "Left") return turnErrorJson(started.left)
          const turn = started.right
          const deltas = turn.updates.pipe(
            Stream.mapConcat((update) => {
              if (update.role !== undefined && update.role !== "assistant") return []
              let text = ""
              for (const part of update.contents) if (part._tag === "text") text += part.text
              return text.length === 0 ? [] : [Sse.frame(JSON.stringify({ text }), "delta")]
            })
          )
          const done = Stream.fromEffect(
            Effect.map(turn.result, ({ originating: shaped }) =>
              Sse.frame(
                JSON.stringify(
                  Option.isSome(shaped) ?
                    { text: responseText(shaped.value.response), delivered: true } :
                    { text: "", delivered: false }
                ),
                "done"
              ))
          )
          const frames = Stream.make(Sse.frame(JSON.stringify({ session }), "start")).pipe(
            Stream.concat(deltas),
            Stream.concat(done),
            Stream.catchAll((error) => Stream.make(turnErrorFrame(error)))
          )
          return Sse.response(heartbeat.withHeartbeat(frames))
        })
      )

      const history = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          const user = input.query.get("user")
          const session = input.query.get("session")
          const userProblem = idProblem("user", user)
          if (userProblem !== undefined) return errorJson(400, "invalid_user", userProblem)
          const sessionProblem = idProblem("session", session)
          if (sessionProblem !== undefined) return errorJson(400, "invalid_session", sessionProblem)
          const conversation = yield* conversationOf(input, user!, session!)
          const sessionId = yield* ctx.sessionIdFor(conversation.key)
          const all = viewMessages(yield* ctx.state.loadHistory(sessionId))
          return json({ session, messages: all.slice(-historyLimit), truncated: all.length > historyLimit })
        })
      )

      const reset = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          const read = yield* readBody(input)
          if ("error" in read) return read.error
          const { session, user } = read.body
          const userProblem = idProblem("user", user)
          if (userProblem !== undefined) return errorJson(400, "invalid_user", userProblem)
          const sessionProblem = idProblem("session", session)
          if (sessionProblem !== undefined) return errorJson(400, "invalid_session", sessionProblem)
          yield* ctx.resetSession((yield* conversationOf(input, user as string, session as string)).key)
          return json({ session, reset: true })
        })
      )

      const events = ChannelModule.handler((input) =>
        Effect.sync(() => {
          const user = input.query.get("user")
          const problem = idProblem("user", user)
          if (problem !== undefined) return errorJson(400, "invalid_user", problem)
          const lastEventId = input.request.headers["last-event-id"] ?? input.query.get("last_event_id") ??
            undefined
          // `: connected` is written once the subscription is registered. The stream ends when the host starts
          // shutting down; the page reconnects (with Last-Event-ID) to the next process.
          const pushes = hub.subscribe(user!, lastEventId).pipe(
            Stream.interruptWhen(ctx.draining),
            Stream.map((item) =>
              item._tag === "Subscribed"
                ? `retry: 3000\n\n${Sse.comment("connected")}`
                : Sse.frame(item.data, undefined, item.id)
            )
          )
          return Sse.response(heartbeat.withHeartbeat(pushes))
        })
      )

      const linking = ctx.linking
      const noLinking = errorJson(
        404,
        "linking_unavailable",
        "this host offers no account linking (configure an identity provider: AGENT_HOST_OIDC_ISSUER)"
      )

      const account = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          const user = input.query.get("user")
          const problem = idProblem("user", user)
          if (problem !== undefined) return errorJson(400, "invalid_user", problem)
          if (linking === undefined) return json({ linking: false, linked: false })
          const identity = identityOf(user!)
          const view = yield* linking.linkOf(identity)
          return json(
            Option.match(view, {
              onNone: () => ({ linking: true, linked: false }),
              onSome: (v) => ({ linking: true, ...Account.viewJson(v, identity) })
            })
          )
        })
      )

      const linkAccount = (unlink: boolean) =>
        ChannelModule.handler((input) =>
          Effect.gen(function*() {
            const read = yield* readBody(input)
            if ("error" in read) return read.error
            const problem = idProblem("user", read.body.user)
            if (problem !== undefined) return errorJson(400, "invalid_user", problem)
            if (linking === undefined) return noLinking
            const identity = identityOf(read.body.user as string)
            if (unlink) return json({ unlinked: yield* linking.unlink(identity) })
            // The sign-in page names the browser by its tag: its id is a bearer.
            const offer = yield* linking.offer({
              ...identity,
              attributes: { display_name: `web chat browser ${Redact.tag(identity.nativeId)}` }
            })
            return json({ url: offer.url, expiresAt: offer.expiresAt, message: offer.message })
          })
        )

      const push: ChannelModule.ChannelPush = {
        push: (identity, result, { idempotencyKey, isEcho }) => {
          const messages = viewMessages(result.response.messages)
          if (messages.length === 0) return Effect.void
          const data = JSON.stringify({ kind: isEcho ? "echo" : "reply", messages })
          return hub.publish(identity.nativeId, `${idempotencyKey}${isEcho ? "#echo" : ""}`, data)
        }
      }

      const api = (path: string) => joinPath(name, path)
      return {
        path: pagePath,
        routes: [
          { method: "GET", path: "/", handler: page },
          { method: "GET", path: api("app.js"), handler: script },
          { method: "GET", path: api("style.css"), handler: style },
          { method: "GET", path: api("vendor/markdown-it.min.js"), handler: markdown },
          { method: "POST", path: api("messages"), handler: messages, body: "json" },
          { method: "GET", path: api("history"), handler: history },
          { method: "POST", path: api("reset"), handler: reset, body: "json" },
          { method: "GET", path: api("events"), handler: events },
          { method: "GET", path: api("account"), handler: account },
          { method: "POST", path: api("link"), handler: linkAccount(false), body: "json" },
          { method: "POST", path: api("unlink"), handler: linkAccount(true), body: "json" }
        ],
        push,
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: `web chat page at ${pagePath}`
      }
    }))
}
