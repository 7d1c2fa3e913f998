/**
 * Channels: what a channel contributes to the host, and the only view of the host a channel gets
 * (`ChannelContext`). A channel module imports this file and the domain, nothing else of the core.
 */
import type { HttpServerResponse } from "@effect/platform"
import type { Chunk, Effect, Option, Scope } from "effect"
import { Stream } from "effect"
import type { WebSocket } from "ws"
import type { ChannelRequest, HostedRunResult } from "../domain/ChannelRequest.js"
import type { ChannelStartupError, PushFailed, TurnError } from "../domain/Errors.js"
import type { ChannelIdentity } from "../domain/Identity.js"
import type { AgentResponseUpdate } from "../domain/Message.js"
import type { EpochMillis } from "../domain/Time.js"
import type { IncomingRequest } from "../http/IncomingRequest.js"
import type { ConversationStoreShape } from "../state/ConversationStore.js"
import type { StateStoreShape } from "../state/StateStore.js"
import type { IsolationKeys } from "./RequestContext.js"
import type { BusyPolicy } from "./Sessions.js"
import type { TargetInfo } from "./Target.js"

export type { TargetInfo, TargetSkill } from "./Target.js"

/**
 * The part of the host's state a channel may use directly: stored responses (Responses API), cursors and
 * duplicate detection (Telegram offsets, update ids), and reading a session's history (web chat reload).
 */
export type ChannelState = Pick<
  StateStoreShape,
  | "putResponse"
  | "getResponse"
  | "deleteResponse"
  | "appendResponseEvents"
  | "responseEvents"
  | "responsesWithStatus"
  | "getCursor"
  | "setCursor"
  | "markSeen"
  | "loadHistory"
  | "getAlias"
>

export type { IncomingRequest } from "../http/IncomingRequest.js"
export type { ConversationItem, StoredConversation } from "../state/ConversationStore.js"

/** What a route handler receives: the request, and what the host made of it. */
export interface RouteInput {
  /** The Node request as a plain view (method, url, headers); read its body with `readJson(request, ...)`. */
  readonly request: IncomingRequest
  /** Path parameters (`/responses/:id` → `{ id }`). */
  readonly params: Readonly<Record<string, string>>
  /** Isolation keys from trusted headers; both undefined unless the host trusts them. */
  readonly isolation: IsolationKeys
  /** The query string, parsed. */
  readonly query: URLSearchParams
}

export interface Route {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
  /** Relative to the channel's path; `:name` segments are parameters. */
  readonly path: string
  readonly handler: (input: RouteInput) => Effect.Effect<HttpServerResponse.HttpServerResponse>
  /**
   * `json`: the route takes a JSON body; the host answers 415 unless the request's content type is
   * `application/json` (or a `+json` type), so a cross-site form or `text/plain` post cannot reach it.
   */
  readonly body?: "json"
}

/**
 * A WebSocket endpoint: `GET <path>` with `Upgrade: websocket`. The host first makes its usual checks (the
 * `Host` header, draining, isolation headers), then the handler decides: a response refuses the upgrade (written
 * as the HTTP answer, then the connection is closed), `acceptWebSocket` takes it. Frames are bounded by the host's
 * body limit (`maxBodyBytes`); the host closes sockets still open when it shuts down (close code 1001).
 */
export interface UpgradeRoute {
  /** Relative to the channel's path, like a route's; `:name` segments are parameters. */
  readonly path: string
  readonly handler: (input: RouteInput) => Effect.Effect<HttpServerResponse.HttpServerResponse | WebSocketAccept>
}

/** An accepted upgrade: `open` runs for the connection's life, with the request's isolation keys in place. */
export interface WebSocketAccept {
  readonly _tag: "WebSocketAccept"
  readonly open: (socket: WebSocket) => Effect.Effect<void>
}

export const acceptWebSocket = (open: WebSocketAccept["open"]): WebSocketAccept => ({ _tag: "WebSocketAccept", open })

export const isWebSocketAccept = (u: unknown): u is WebSocketAccept =>
  typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "WebSocketAccept"

/** Context handed to a channel's response hook for one destination. */
export interface ResponseHookContext {
  readonly request: ChannelRequest
  readonly channel: string
  /** Undefined for the originating reply. */
  readonly destination: ChannelIdentity | undefined
  readonly originating: boolean
  /** True for the echoed user turn pushed before the reply. */
  readonly isEcho: boolean
}

export interface ChannelHooks {
  /** Rewrites the request before it runs (options, session, target, input). `raw` is the native payload. */
  readonly run?: (request: ChannelRequest, raw: unknown) => Effect.Effect<ChannelRequest>
  /** Rewrites or drops (Option.none) each streaming update. */
  readonly streamTransform?: (update: AgentResponseUpdate) => Effect.Effect<Option.Option<AgentResponseUpdate>>
  /** Shapes the result for one destination; it gets a private copy. */
  readonly response?: (result: HostedRunResult, context: ResponseHookContext) => Effect.Effect<HostedRunResult>
}

/** Why a push failed, so the task runner knows whether (and when) to try again. */
export { PushFailed } from "../domain/Errors.js"

export interface ChannelPush {
  /** Sends `result` to `identity` without an inbound request. `idempotencyKey` is stable across retries. */
  readonly push: (
    identity: ChannelIdentity,
    result: HostedRunResult,
    options: { readonly isEcho: boolean; readonly idempotencyKey: string }
  ) => Effect.Effect<void, PushFailed>
}

/** A chat command (`/new`, `/help`) a channel exposes natively. */
export interface ChannelCommand {
  readonly name: string
  readonly description: string
  readonly handle: (context: CommandContext) => Effect.Effect<void>
}

export interface CommandContext {
  readonly request: ChannelRequest
  readonly args: string
  readonly reply: (text: string) => Effect.Effect<void>
}

/**
 * `chat`: people talk to the agent through it; every caller is checked against the allowlist. `programmatic`:
 * API clients guarded by API keys; an identity they carry is checked only when the allowlist names the channel.
 */
export type ChannelKind = "chat" | "programmatic"

export interface ChannelContribution {
  /** Default `chat`. */
  readonly kind?: ChannelKind
  /** Mount prefix for the channel's routes; "" mounts at the root. */
  readonly path: string
  readonly routes: ReadonlyArray<Route>
  /** WebSocket endpoints (`GET` with `Upgrade: websocket`), mounted under `path` like routes. */
  readonly upgrades?: ReadonlyArray<UpgradeRoute>
  readonly commands?: ReadonlyArray<ChannelCommand>
  /** Runs after every channel is built, in channel order; resources it acquires live until shutdown. */
  readonly startup?: Effect.Effect<void, ChannelStartupError, Scope.Scope>
  readonly hooks?: ChannelHooks
  readonly push?: ChannelPush
  /** What happens when a turn arrives while the session is busy (default `queue`). */
  readonly busyPolicy?: BusyPolicy
  /** Extra words for the startup banner. */
  readonly describe?: string
}

/**
 * What a finished turn hands back to the channel that started it. By then the turn is recorded (history, the
 * caller's identity) and its pushes to other destinations are scheduled: nothing is left for the channel to do
 * but render `originating`, so a caller that goes away changes nothing about what is stored and pushed.
 */
export interface TurnOutcome {
  /** The result as the host recorded it: the reply annotated with its delivery decision. */
  readonly result: HostedRunResult
  /** The originating reply, shaped by this channel's response hook; none when the reply goes elsewhere only. */
  readonly originating: Option.Option<HostedRunResult>
}

/** A running turn's stream: updates as they come, then the outcome. */
export interface TurnStream {
  readonly updates: Stream.Stream<AgentResponseUpdate, TurnError>
  /** Completes when the turn (with its delivery) does, whether or not `updates` was consumed. */
  readonly result: Effect.Effect<TurnOutcome, TurnError>
  /**
   * Reads `updates` without a stream run: `f` gets each chunk as it comes (a loop over the turn's mailbox, a
   * fraction of a stream run's steps). Absent on some turns (forwarded ones): `forEachUpdateChunk` covers both.
   */
  readonly forEachChunk?: <E>(
    f: (chunk: Chunk.Chunk<AgentResponseUpdate>) => Effect.Effect<void, E>
  ) => Effect.Effect<void, TurnError | E>
  /**
   * The turn runs in the reader's fiber as it is read (`StreamExtras.inline`): `f` is called inside the turn, so it
   * should not wait on its client (write without backpressure; the updates are in memory already). A failure of
   * `f` does not stop the turn: `forEachChunk` fails with it once the turn has ended.
   */
  readonly inline?: boolean
}

/** Runs `f` on each chunk of a turn's updates as they come: `turn.forEachChunk` when it has one. */
export const forEachUpdateChunk = <E>(
  turn: TurnStream,
  f: (chunk: Chunk.Chunk<AgentResponseUpdate>) => Effect.Effect<void, E>
): Effect.Effect<void, TurnError | E> =>
  turn.forEachChunk === undefined ? Stream.runForEachChunk(turn.updates, f) : turn.forEachChunk(f)

/** A sign-in link for one channel identity (single use, short-lived). */
export interface LinkOffer {
  readonly challengeId: string
  readonly url: string
  readonly expiresAt: EpochMillis
  /** Short text for the person, without the URL. */
  readonly message: string
}

/** A stored link, as a channel may show it (`/whoami`). */
export interface LinkView {
  /** The identity that is linked (for a group chat: the person who asked, not the group). */
  readonly identity: ChannelIdentity
  readonly subject: string
  /** The key the person's linked identities share (the identity's own key unless sessions are linked). */
  readonly isolationKey: string
  /** The verified claims the provider signed (email, groups, ...). */
  readonly claims: Readonly<Record<string, string | ReadonlyArray<string>>>
  readonly linkedAt: EpochMillis
  /** Every identity linked to the same key, this one included. */
  readonly linkedIdentities: ReadonlyArray<ChannelIdentity>
}

/**
 * Account linking as a channel uses it (`/link`, `/unlink`, `/whoami`, a sign-in button). Present when the host
 * has an identity linker that supports it. A channel whose identity is a shared conversation (a group chat)
 * puts the speaker's own native id in `identity.attributes.user_id`: links belong to people, not groups.
 */
export interface ChannelLinking {
  /** A fresh sign-in link for the person behind `identity`. */
  readonly offer: (identity: ChannelIdentity) => Effect.Effect<LinkOffer>
  readonly linkOf: (identity: ChannelIdentity) => Effect.Effect<Option.Option<LinkView>>
  /** Removes the person's link; false when there was none. */
  readonly unlink: (identity: ChannelIdentity) => Effect.Effect<boolean>
}

/** What a blocking turn may do besides its own work (`ChannelContext.run`). */
export interface RunExtras {
  /**
   * The channel's own record of the reply (e.g. a stored response), written with it: called with the outcome
   * once the reply's history append is queued, inside the turn (a caller that goes away does not stop it). It
   * must complete only once its write is committed (a `ChannelState` write does): the reply's append commits
   * with it or before it, so the turn waits for one commit, not two. Not called when the turn fails, nor when
   * it runs on another host (cluster mode): the caller then records after `run` as usual.
   */
  readonly withReply?: (outcome: TurnOutcome) => Effect.Effect<void>
}

/** What a streaming turn may do besides its own work (`ChannelContext.runStream`). */
export interface StreamExtras {
  /**
   * The caller is an HTTP request's fiber that reads the turn itself, in that fiber, before it ends
   * (`forEachChunk`, or at least `result`): when the session is idle and the target gives its updates at once, the
   * turn then runs in that fiber as it is read (no fork, no mailbox), shielded from the client going away
   * (`TurnStream.inline`). Otherwise ignored.
   */
  readonly inline?: boolean
  /**
   * As `RunExtras.withReply`, for a turn that runs inline: called inside the turn once every update was handed
   * to `forEachChunk`'s function and the reply's append is queued. Not called otherwise (the caller records
   * after `result`, as usual).
   */
  readonly withReply?: (outcome: TurnOutcome) => Effect.Effect<void>
}

/** The host as a channel sees it. */
export interface ChannelContext {
  readonly channel: string
  /**
   * Runs a turn in the request's session: authorize, run the target, record, deliver (schedule pushes, shape the
   * originating reply). `raw` reaches the run hook.
   */
  readonly run: (request: ChannelRequest, raw?: unknown, extras?: RunExtras) => Effect.Effect<TurnOutcome, TurnError>
  /**
   * Starts a streaming turn. Fails at once when the turn cannot start (validation, busy, denied); the turn
   * belongs to the session, so abandoning `updates` does not cancel it (unless `onDisconnect` is `cancel`).
   */
  readonly runStream: (
    request: ChannelRequest,
    raw?: unknown,
    extras?: StreamExtras
  ) => Effect.Effect<TurnStream, TurnError>
  /** Starts a fresh conversation for `isolationKey` (rotates its session alias); returns the new session id. */
  readonly resetSession: (isolationKey: string) => Effect.Effect<string>
  /** Host settings a channel may read. */
  readonly settings: HostSettings
  /** State the channel may read and write directly. */
  readonly state: ChannelState
  /** OpenAI Conversations (the Responses channel's `/conversations`); persistent when the state is. */
  readonly conversations: ConversationStoreShape
  /** The session id (alias after a reset, else the key) a key's turns currently run under. */
  readonly sessionIdFor: (isolationKey: string) => Effect.Effect<string>
  /**
   * Completes when the host starts shutting down. In-flight turns need nothing from the channel: they get the
   * grace period, then fail with `TurnCancelled` (`reason: "shutdown"`) through the channel's usual error path.
   * A channel ends here what is not a turn and would otherwise stay open (subscriptions, live push streams).
   */
  readonly draining: Effect.Effect<void>
  /**
   * What the host runs: its name (`default-agent`, `openai:gpt-4o-mini`), kind and, when it gives them, description
   * and skills — e.g. to list it as a model or describe it in an agent card.
   */
  readonly target: TargetInfo
  /** Account linking, when the host has a linker that offers it (see `ChannelLinking`). */
  readonly linking?: ChannelLinking
}

export interface HostSettings {
  readonly trustIsolationHeaders: boolean
  /** Largest accepted request body, in bytes. */
  readonly maxBodyBytes: number
  /** Deepest nesting of arrays and objects a JSON body may have (`readJson` checks it before parsing). */
  readonly maxJsonDepth: number
  /** Most items one array (or members one object) of a JSON body may hold, e.g. Responses `input` items. */
  readonly maxJsonItems: number
  /** API keys guarding programmatic channels; empty when none are configured. */
  readonly apiKeys: ReadonlyArray<string>
  /**
   * Keys guarding the admin routes (`AGENT_HOST_ADMIN_KEYS`); when empty the API keys guard them, and with
   * neither the admin routes are not mounted.
   */
  readonly adminKeys: ReadonlyArray<string>
  /**
   * Keys whose bearer may name any destination in a response target (`AGENT_HOST_PUSH_KEYS`); they are also
   * accepted as API keys.
   */
  readonly pushKeys: ReadonlyArray<string>
}

export interface Channel<E = never, R = never> {
  readonly name: string
  readonly make: (context: ChannelContext) => Effect.Effect<ChannelContribution, E, R | Scope.Scope>
}

export const make = <E = never, R = never>(
  name: string,
  build: (context: ChannelContext) => Effect.Effect<ChannelContribution, E, R | Scope.Scope>
): Channel<E, R> => ({ name, make: build })

/** Identity helper that types a route handler. */
export const handler = (
  f: (input: RouteInput) => Effect.Effect<HttpServerResponse.HttpServerResponse>
): Route["handler"] => f
