/**
 * The OpenAI Responses API channel: `POST /v1/responses` (JSON or SSE), `GET /v1/responses/{id}` (with
 * `?stream=true&starting_after=N` for background responses), `DELETE`, `GET .../input_items` and
 * `POST .../cancel`, and the Conversations API (`Conversations.ts`), so the official `openai` client works
 * against the host unchanged.
 *
 * The turn records itself and delivers its reply whether or not anyone waits; what the channel adds is the
 * stored response, and that is written also when the caller goes away:
 * - a blocking request waits for the turn uninterruptibly (unless `on_disconnect: cancel`), then stores;
 * - a foreground stream renders in the response itself; a caller that leaves early leaves a fiber that waits
 *   for the turn's outcome and stores it;
 * - a background response renders in one fiber of the channel's scope into a `LiveRun` that any number of
 *   streams follow (`GET ...?stream=true`, replaying from `starting_after`), persisting its events so a later
 *   replay sees exactly what a live client saw; `cancel` interrupts that fiber.
 * A turn the host stops at shutdown (its grace period over) ends the response as `incomplete` (reason
 * `server_shutdown`) with the output so far: streams get `response.incomplete`, the stored response says so,
 * and a blocking request gets a 503 with `retry-after`.
 *
 * At startup (before anything is served) the channel ends the background responses a dead process left `queued`
 * or `in_progress` (kill -9, a crash): each becomes `incomplete` with `incomplete_details.reason` =
 * `server_restarted`, keeping the output it had, and its stored stream gets the closing events and
 * `response.incomplete`, so neither polling nor a `?stream=true` replay waits forever. The state dir has a single
 * owner, so whatever is unfinished at startup belongs to a process that is gone.
 */
import type { HttpServerResponse } from "@effect/platform"
import type { Scope } from "effect"
import { Cause, Duration, Effect, Either, Exit, Fiber, Option, Stream } from "effect"
import type {
  Channel,
  ChannelContext,
  ChannelHooks,
  ConversationItem,
  RouteInput,
  TurnOutcome,
  TurnStream
} from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { OnDisconnect } from "../../core/Sessions.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import { isShutdown } from "../../domain/Errors.js"
import { isolationKey, issueId, randomId } from "../../domain/Ids.js"
import type { Message } from "../../domain/Message.js"
import * as Time from "../../domain/Time.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { json, jsonText } from "../../http/HttpBody.js"
import { readJsonObject } from "../../http/JsonObject.js"
import { ON_DISCONNECT_HEADER, onDisconnectOf } from "../../http/OnDisconnect.js"
import * as Sse from "../../http/Sse.js"
import { describeTurnError } from "../../http/TurnErrors.js"
import { sameUser } from "../../http/UserScope.js"
import * as Compaction from "./Compaction.js"
import type { ConversationTurn } from "./Conversations.js"
import * as Conversations from "./Conversations.js"
import * as LiveRun from "./LiveRun.js"
import type { RenderedEvent, Skeleton } from "./Render.js"
import {
  endInterrupted,
  eventFrame,
  makeSkeleton,
  outputItems,
  resource,
  statusOf,
  StreamRenderer,
  usageJson
} from "./Render.js"
import type { InputItem } from "./Request.js"
import { identityOf, parseInput, parseResponseTarget, runOptions } from "./Request.js"
import * as Socket from "./Socket.js"
import type { CreateResponseBody } from "./Wire.js"
import type { Previous, Refusal } from "./Wire.js"
import { callIdsOf, decodeCreateBody, errorResponse, listQuery } from "./Wire.js"

export interface Options {
  readonly name?: string
  /** Mount prefix (default `/v1`, so `new OpenAI({ baseURL: "<host>/v1" })` works). */
  readonly path?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
  /** The `model` reported when the request names none (default `agent`). */
  readonly model?: string
  /** SSE comment sent when the agent has been silent this long (default 15 seconds). */
  readonly heartbeatInterval?: Duration.DurationInput
  /**
   * What a caller's disconnect does to a foreground turn when the request does not say (default `continue`).
   * Background responses always continue.
   */
  readonly onDisconnect?: OnDisconnect
  /** WebSocket mode: how often an idle peer is pinged; one that misses a pong is cut (default 30 seconds). */
  readonly pingInterval?: Duration.DurationInput
  /** WebSocket mode: responses a connection remembers for `previous_response_id` (default 16, the most recent). */
  readonly maxCachedResponses?: number
  /** Most items a conversation holds (default 10,000); adding past it is refused (400). */
  readonly maxConversationItems?: number
  /**
   * Most recent conversation items a turn is given when it cannot continue the conversation's session (default
   * 200, the host's default history limit).
   */
  readonly conversationContextItems?: number
}

/** Most history messages a compaction of `previous_response_id` takes (the most recent). */
const compactHistoryLimit = 1_000

/** Metadata key set on a response whose reply went to other channels only. */
export const OUT_OF_BAND_KEY = "agent_host_delivery"

/**
 * A new response id: `resp_`, its creation time (12 hex digits of epoch millis) and 128 CSPRNG bits (ids double as
 * handles for GET/DELETE). The time prefix makes ids, and the session keys made from them, grow over time, so the
 * stored rows land at the right edge of their indexes instead of at random pages (half the SQLite time per
 * request, measured).
 */
const responseId = (createdAt: Time.EpochMillis) => `resp_${createdAt.toString(16).padStart(12, "0")}${randomId()}`

type Obj = Record<string, unknown>

/** A stored stream event: its type and its JSON text, as `persist` stores it. */
const decodeStoredEvent = (stored: { readonly sequence: number; readonly event: unknown }) => {
  const event = stored.event as { readonly type?: unknown; readonly data?: unknown } | null
  if (event === null || typeof event !== "object" || typeof event.type !== "string") return []
  if (typeof event.data !== "string") return []
  try {
    const data: unknown = JSON.parse(event.data)
    return data !== null && typeof data === "object" && !Array.isArray(data) ?
      [{ sequence: stored.sequence, type: event.type, data: data as Obj }] :
      []
  } catch {
    return []
  }
}

const refusalResponse = (refusal: Refusal) =>
  errorResponse(refusal.status, refusal.code, refusal.message, refusal.param, refusal.headers)

/** A failed turn's refusal; the error's `code`, and `url` (link required) in the message. */
const turnRefusal = (error: TurnError): Refusal => {
  const parts = describeTurnError(error)
  return {
    status: parts.status,
    code: parts.code,
    message: parts.url === undefined ? parts.message : `${parts.message} (${parts.url})`,
    param: parts.param ?? null,
    headers: parts.headers
  }
}

/** A failed turn in OpenAI's envelope. */
const turnErrorResponse = (error: TurnError) => refusalResponse(turnRefusal(error))

const previousOf = (
  stored: { readonly id: string; readonly sessionKey: string | undefined; readonly response: unknown },
  channel: string
): Previous => ({
  sessionKey: stored.sessionKey ?? `${channel}:${stored.id}`,
  callIds: callIdsOf(stored.response)
})

/** The failure a response records: `server_error` is the code every client knows. */
const failureOf = (error: { readonly message: string }) => ({ code: "server_error", message: error.message })

/** `incomplete_details.reason` of a response whose turn the host stopped at shutdown. */
export const SHUTDOWN_REASON = "server_shutdown"

/** SSE frames of rendered events, as one string (one write). */
const framesOf = (events: ReadonlyArray<RenderedEvent>): string => {
  let text = ""
  for (const event of events) text += eventFrame(event.type, event.json)
  return text
}

const storedEvents = (events: ReadonlyArray<RenderedEvent>) =>
  events.map((e) => ({ sequence: e.sequence, event: { type: e.type, data: e.json } }))

/**
 * How a streamed turn ended: its outcome or error, or stopped before it finished: `cancelled` (the cancel
 * route), `shutdown` (the channel's scope closed), or a defect.
 */
type Ending =
  | Either.Either<TurnOutcome, TurnError>
  | "cancelled"
  | "shutdown"
  | { readonly defect: unknown }

interface Prepared {
  readonly id: string
  readonly body: CreateResponseBody
  readonly request: ChannelRequest
  readonly skeleton: Skeleton
  readonly items: ReadonlyArray<InputItem>
  readonly sessionKey: string
  /** The caller's trusted user isolation key: the stored response belongs to that user. */
  readonly userKey: string | undefined
  readonly store: boolean
  readonly createdAt: Time.EpochMillis
  /** The reply is shown as it streams: it goes to the caller (a reply that may go elsewhere is decided after). */
  readonly liveText: boolean
  /** A turn in a conversation: the conversation's copy of the input items is appended when it completes. */
  readonly conversation?: { readonly turn: ConversationTurn; readonly items: ReadonlyArray<ConversationItem> }
}

/** How a rendering ended: the final resource and the last events (the terminal one among them). */
interface Recorded {
  readonly final: Obj
  readonly out: ReadonlyArray<RenderedEvent>
}

/** Where a foreground rendering goes (`renderLive`). */
interface Live {
  readonly renderer: StreamRenderer
  /** Writes events, waiting while the reader's buffer is full. */
  readonly publish: (events: ReadonlyArray<RenderedEvent>) => Effect.Effect<void>
  /** Writes events already in memory (the start, a chunk of updates) without waiting. */
  readonly publishNow: (events: ReadonlyArray<RenderedEvent>) => Effect.Effect<void>
  /** The ending the turn recorded with its reply (an inline turn), stored already; else undefined. */
  readonly recorded: () => Recorded | undefined
}

/** A background response still rendering. */
interface Background {
  readonly run: LiveRun.LiveRun
  /** The fiber rendering it; interrupting it ends the response (`cancelled` when `cancelled` is set). */
  fiber: Fiber.RuntimeFiber<void> | undefined
  cancelled: boolean
  /** Deleted while it ran: nothing is stored when it ends. */
  deleted: boolean
}

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "responses"
  const defaultModel = options.model ?? "agent"
  const heartbeatInterval = Duration.decode(options.heartbeatInterval ?? Duration.seconds(15))
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const scope: Scope.Scope = yield* Effect.scope
      const heartbeat = yield* Sse.heartbeat(heartbeatInterval)
      const authorized = makeChecker(ctx.settings.apiKeys)
      const sealer = yield* Compaction.loadSealer(ctx.state, name)
      const live = new Map<string, Background>()

      /** Ends what a dead process left running (see the module comment); runs before any route is served. */
      const endInterruptedRuns = Effect.gen(function*() {
        const unfinished = yield* ctx.state.responsesWithStatus(["queued", "in_progress"])
        for (const stored of unfinished) {
          const response = stored.response as Obj
          const events = (yield* ctx.state.responseEvents(stored.id, 0)).flatMap(decodeStoredEvent)
          const { final, out } = endInterrupted(response, events)
          // Events first: if this is cut short too, the next startup finds the terminal event and only stores.
          yield* ctx.state.appendResponseEvents(stored.id, storedEvents(out))
          yield* ctx.state.putResponse({ ...stored, response: final })
        }
        if (unfinished.length > 0) {
          yield* Effect.logWarning("ended responses a previous process left in progress").pipe(
            Effect.annotateLogs({ channel: name, count: unfinished.length, status: "incomplete" })
          )
        }
      })
      yield* endInterruptedRuns

      const unauthorized = errorResponse(
        401,
        "invalid_api_key",
        "a valid API key is required: send Authorization: Bearer <key>"
      )

      const conversations = Conversations.make({
        ctx,
        name,
        authorized,
        unauthorized,
        sealer,
        maxItems: options.maxConversationItems ?? 10_000,
        contextItems: options.conversationContextItems ?? 200,
        outOfBandKey: OUT_OF_BAND_KEY
      })

      /** A conversation's turn has ended with `final`: its items are appended (see Conversations.ts). */
      const conclude = (prepared: Prepared, final: Obj) =>
        prepared.conversation === undefined ?
          Effect.void :
          conversations.end(prepared.conversation.turn, prepared.conversation.items, final)

      /** Stores `response` (if the request asked to); `responseJson`, when given, is its JSON text. */
      const store = (prepared: Prepared, response: Obj, responseJson?: string) =>
        prepared.store ?
          ctx.state.putResponse({
            id: prepared.id,
            sessionKey: prepared.sessionKey,
            ...(prepared.userKey === undefined ? {} : { userKey: prepared.userKey }),
            response,
            ...(responseJson === undefined ? {} : { responseJson }),
            inputItems: prepared.items,
            createdAt: prepared.createdAt
          }) :
          Effect.void

      /**
       * A stored response, if it belongs to the caller: with a trusted user isolation key, only that user's
       * responses exist for it (another user's id is exactly as missing as an unknown one).
       */
      const getOwn = (id: string, input: RouteInput) =>
        Effect.map(
          ctx.state.getResponse(id),
          Option.filter((stored) => sameUser(stored.userKey, input.isolation.user))
        )

      const invalid = (message: string, param: string | null = null) =>
        Either.left<Refusal>({ status: 400, code: "invalid_request", message, param })

      /** The stored response `id` as a continuation sees it, if it belongs to the caller. */
      const storedPrevious = (id: string, input: RouteInput) =>
        Effect.map(getOwn(id, input), Option.map((stored): Previous => previousOf(stored, name)))

      /** Reads, validates and maps a create request; a Left is the error to answer with. */
      const prepare = (input: RouteInput): Effect.Effect<Either.Either<Prepared, Refusal>> =>
        Effect.matchEffect(readJsonObject(input.request, ctx.settings), {
          onFailure: (problem) =>
            Effect.succeed(Either.left<Refusal>({
              status: problem.status,
              code: problem.type,
              message: problem.message,
              param: null
            })),
          onSuccess: (raw) => prepareBody(raw, input, (id) => storedPrevious(id, input), "http")
        })

      /**
       * Validates and maps a create body (HTTP, or a WebSocket `response.create`); `previous` finds the response a
       * `previous_response_id` continues (stored responses; a socket looks in its own cache first).
       */
      const prepareBody = (
        raw: Obj,
        input: RouteInput,
        previousOf: (id: string) => Effect.Effect<Option.Option<Previous>>,
        transport: "http" | "websocket"
      ): Effect.Effect<Either.Either<Prepared, Refusal>> => {
        const decoded = decodeCreateBody(raw)
        if (!("body" in decoded)) return Effect.succeed(invalid(decoded.message, decoded.param))
        const body = decoded.body
        if (body.input == null) {
          return Effect.succeed(Either.left<Refusal>({
            status: 400,
            code: "missing_required_parameter",
            message: "input is required",
            param: "input"
          }))
        }
        if (body.previous_response_id != null && body.conversation != null) {
          return Effect.succeed(invalid("send previous_response_id or conversation, not both", "conversation"))
        }
        if (transport === "websocket" && body.background === true) {
          return Effect.succeed(
            invalid("WebSocket responses stream on the socket: background is not available here", "background")
          )
        }
        if (body.background === true && body.store === false) {
          return Effect.succeed(invalid("background responses must be stored (store: true)", "store"))
        }
        const explicit = onDisconnectOf(input.request, body.on_disconnect, "continue")
        if (typeof explicit !== "string") return Effect.succeed(invalid(explicit.message, explicit.param))
        const asked = body.on_disconnect != null || (input.request.headers[ON_DISCONNECT_HEADER] ?? "") !== ""
        if (body.background === true && asked && explicit === "cancel") {
          return Effect.succeed(invalid(
            "a background response has no caller to wait for it: on_disconnect cancel needs a foreground request",
            "on_disconnect"
          ))
        }
        const onDisconnect: OnDisconnect = body.background === true ?
          "continue" :
          asked ?
          explicit :
          options.onDisconnect ?? "continue"
        const target = parseResponseTarget(body.response_target)
        if (target !== undefined && "message" in target) return Effect.succeed(invalid(target.message, target.param))
        const rawInput = body.input
        return Effect.clockWith((clock) => {
          const createdAt = Time.fromMillis(clock.unsafeCurrentTimeMillis())
          const id = responseId(createdAt)
          const base = id.slice(5)
          const user = input.isolation.user
          const parsed = parseInput(
            rawInput,
            (kind, n) => `${kind}_${base}_in${n}`,
            (content) => sealer.open(content, user)
          )
          if ("message" in parsed) return Effect.succeed(invalid(parsed.message, parsed.param))

          // `fresh`: a key made from the new response id names a session nothing is stored under yet.
          const finish = (
            sessionKey: string,
            fresh: boolean,
            conversation: ConversationTurn | undefined
          ): Effect.Effect<Either.Either<Prepared, Refusal>> => {
            const key = isolationKey(sessionKey)
            if (Either.isLeft(key)) return Effect.succeed(Either.left(turnRefusal(key.left)))
            const identity = identityOf(name, body)
            const request: ChannelRequest = {
              channel: name,
              operation: "message.create",
              input: conversation === undefined || conversation.history.length === 0 ?
                parsed.messages :
                [...conversation.history, ...parsed.messages],
              session: fresh ? { isolationKey: key.right, fresh } : { isolationKey: key.right },
              ...(identity === undefined ? {} : { identity }),
              ...(target === undefined ? {} : { responseTarget: target }),
              options: runOptions(body),
              attributes: body.previous_response_id != null ?
                { responseId: id, previousResponseId: body.previous_response_id } :
                { responseId: id },
              stream: transport === "websocket" || body.stream === true,
              onDisconnect
            }
            return Effect.succeed(Either.right<Prepared>({
              id,
              body,
              request,
              skeleton: makeSkeleton(id, createdAt, body, defaultModel),
              items: parsed.items,
              sessionKey,
              userKey: input.isolation.user,
              store: body.store !== false,
              createdAt,
              liveText: target === undefined || target.kind === "originating",
              ...(conversation === undefined ? {} : {
                conversation: {
                  turn: conversation,
                  items: Conversations.conversationCopy(parsed.items, base, (itemId) => itemId.includes(`_${base}_in`))
                }
              })
            }))
          }

          const previousId = body.previous_response_id
          if (previousId != null) {
            return Effect.flatMap(previousOf(previousId), (previous) => {
              if (Option.isNone(previous)) {
                return Effect.succeed(Either.left<Refusal>({
                  status: 404,
                  code: "previous_response_not_found",
                  message: `Previous response with id '${previousId}' not found.`,
                  param: "previous_response_id"
                }))
              }
              // A tool output answers a call of the response it continues (or one sent with it).
              const calls = new Set(previous.value.callIds)
              for (const item of parsed.items) {
                if (item.type === "function_call") calls.add(String(item["call_id"]))
                else if (item.type === "function_call_output" && !calls.has(String(item["call_id"]))) {
                  return Effect.succeed(invalid(
                    `No tool call found for function call output with call_id '${
                      String(item["call_id"])
                    }': it must answer a function_call of response '${previousId}' or of this input.`,
                    "input"
                  ))
                }
              }
              const sessionKey = previous.value.sessionKey
              return Effect.zipRight(conversations.release(sessionKey), finish(sessionKey, false, undefined))
            })
          }
          if (body.conversation != null) {
            return Effect.flatMap(
              conversations.begin(body.conversation, user, parsed.items.length),
              (begun) =>
                Either.isLeft(begun) ?
                  Effect.succeed(Either.left(begun.left)) :
                  finish(begun.right.sessionKey, begun.right.fresh, begun.right)
            )
          }
          if (input.isolation.chat !== undefined) return finish(input.isolation.chat, false, undefined)
          return finish(`${name}:${id}`, true, undefined)
        })
      }

      const outOfBand = (prepared: Prepared): Record<string, string> => ({
        ...prepared.body.metadata,
        [OUT_OF_BAND_KEY]: "out_of_band"
      })

      /** The resource of a finished turn rendered whole (blocking requests, streams whose caller left). */
      const finishedResource = (prepared: Prepared, outcome: TurnOutcome, completedAt: Time.EpochMillis): Obj => {
        const { originating: shaped, result } = outcome
        if (Option.isNone(shaped)) {
          return resource(prepared.skeleton, {
            status: "completed",
            output: [],
            usage: usageJson(result.response.usage),
            completedAt,
            metadata: outOfBand(prepared)
          })
        }
        const response = shaped.value.response
        const { incompleteReason, status } = statusOf(response.finishReason)
        return resource(prepared.skeleton, {
          status,
          output: outputItems(prepared.id, response, status === "completed" ? "completed" : "incomplete"),
          usage: usageJson(response.usage),
          ...(incompleteReason === undefined ? {} : { incompleteReason }),
          completedAt: status === "completed" ? completedAt : null
        })
      }

      /**
       * Closes a streamed rendering: the last events (into `out`) and the final resource. `whole` is set when the
       * rendering missed updates (its caller left): a finished turn is then rendered from its result.
       */
      const endRendering = (
        prepared: Prepared,
        renderer: StreamRenderer,
        ending: Ending,
        out: Array<RenderedEvent>,
        whole: boolean
      ) => Effect.map(Time.now, (completedAt) => closeRendering(prepared, renderer, ending, out, whole, completedAt))

      /** `endRendering` at `completedAt`. */
      const closeRendering = (
        prepared: Prepared,
        renderer: StreamRenderer,
        ending: Ending,
        out: Array<RenderedEvent>,
        whole: boolean,
        completedAt: Time.EpochMillis
      ): Obj => {
        if (ending === "shutdown") return renderer.end(out, { completedAt, incomplete: SHUTDOWN_REASON })
        if (ending === "cancelled") return renderer.end(out, { completedAt, cancelled: true })
        if ("defect" in ending) {
          return renderer.end(out, {
            completedAt,
            error: failureOf({ message: "the response could not be rendered" })
          })
        }
        if (Either.isLeft(ending)) {
          const error = ending.left
          if (isShutdown(error)) return renderer.end(out, { completedAt, incomplete: SHUTDOWN_REASON })
          // A stream whose caller left with `on_disconnect: cancel` is cancelled by that, not failed.
          if (whole && error._tag === "TurnCancelled") return renderer.end(out, { completedAt, cancelled: true })
          return renderer.end(out, { completedAt, error: failureOf(error) })
        }
        if (whole) return finishedResource(prepared, ending.right, completedAt)
        const { originating: shaped, result } = ending.right
        if (Option.isNone(shaped)) {
          return renderer.end(out, { completedAt, usage: result.response.usage, metadata: outOfBand(prepared) })
        }
        if (!prepared.liveText) renderer.items(outputItems(prepared.id, shaped.value.response, "completed"), out)
        const usage = shaped.value.response.usage ?? result.response.usage
        return renderer.end(out, usage === undefined ? { completedAt } : { completedAt, usage })
      }

      /** How awaiting a turn (or rendering it) ended, when interruption means `interrupted`. */
      const endingOf = (
        exit: Exit.Exit<TurnOutcome, TurnError>,
        interrupted: () => "cancelled" | "shutdown"
      ): Ending => {
        if (Exit.isSuccess(exit)) return Either.right(exit.value)
        const failure = Cause.failureOption(exit.cause)
        if (Option.isSome(failure)) return Either.left(failure.value)
        return Cause.isInterruptedOnly(exit.cause) ? interrupted() : { defect: Cause.squash(exit.cause) }
      }

      /** What a blocking turn that failed stores (a shutdown or an agent failure), then its error answer. */
      const blockingFailed = (prepared: Prepared, error: TurnError) => {
        const answer = turnErrorResponse(error)
        if (isShutdown(error)) {
          return Effect.as(
            store(
              prepared,
              resource(prepared.skeleton, { status: "incomplete", output: [], incompleteReason: SHUTDOWN_REASON })
            ),
            answer
          )
        }
        if (error._tag === "AgentError" || error._tag === "TurnCancelled") {
          return Effect.as(
            store(prepared, resource(prepared.skeleton, { status: "failed", output: [], error: failureOf(error) })),
            answer
          )
        }
        return Effect.succeed(answer)
      }

      /**
       * A blocking turn: the final resource, or the turn's error. A stored response is written with the reply
       * (`withReply`: one commit, not two, and committed before the 200), serialised once for the row and the
       * body; a turn that ran elsewhere (cluster mode) did not call it, so it is stored here after.
       */
      const runBlocking = (prepared: Prepared): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
        let recorded: { readonly final: Obj; readonly text: string } | undefined
        const record = (outcome: TurnOutcome) =>
          Effect.clockWith((clock) => {
            const final = finishedResource(prepared, outcome, Time.fromMillis(clock.unsafeCurrentTimeMillis()))
            const text = JSON.stringify(final)
            recorded = { final, text }
            return store(prepared, final, text)
          })
        const answer = () => {
          const { final, text } = recorded!
          return prepared.conversation === undefined ?
            Effect.succeed(jsonText(text)) :
            Effect.as(conclude(prepared, final), jsonText(text))
        }
        return Effect.matchEffect(
          ctx.run(prepared.request, prepared.body, prepared.store ? { withReply: record } : {}),
          {
            onFailure: (error) => blockingFailed(prepared, error),
            // Not recorded with the reply: `store: false`, or the turn ran on another host.
            onSuccess: (outcome) => recorded === undefined ? Effect.flatMap(record(outcome), answer) : answer()
          }
        )
      }

      /** Consumes a turn's updates, rendering each chunk into `publish` (nothing when not shown live). */
      const render = (
        prepared: Prepared,
        turn: TurnStream,
        renderer: StreamRenderer,
        publish: (events: ReadonlyArray<RenderedEvent>) => Effect.Effect<void>
      ) =>
        ChannelModule.forEachUpdateChunk(
          turn,
          prepared.liveText ?
            (chunk) => {
              const out: Array<RenderedEvent> = []
              for (const update of chunk) renderer.update(update, out)
              return out.length === 0 ? Effect.void : publish(out)
            } :
            () => Effect.void
        )

      /**
       * A foreground stream (`stream: true`), rendered as the response is written, then stored, then its terminal
       * event sent (so a stream that ended means a stored response). A caller that leaves before the end
       * interrupts the rendering, which leaves a fiber in the channel's scope that awaits the turn and stores how
       * it ended (leaving under `on_disconnect: cancel` cancels the turn: `cancelled`). When the turn runs inline
       * (`StreamExtras.inline`: an idle session), it runs in the writer's fiber as the response is written, and
       * the stored response is written with the reply (one commit, not two, before the terminal event).
       */
      const startForeground = (p: Prepared) => {
        const renderer = new StreamRenderer(p.skeleton)
        let recorded: Recorded | undefined
        // Called inside an inline turn once it has rendered every update (the reader reads first, in that fiber).
        const record = (outcome: TurnOutcome) =>
          Effect.clockWith((clock) => {
            const out: Array<RenderedEvent> = []
            const ending: Ending = Either.right(outcome)
            const completedAt = Time.fromMillis(clock.unsafeCurrentTimeMillis())
            // Not started (no reader reached the turn first): rendered whole from the outcome.
            const final = closeRendering(p, renderer, ending, out, renderer.lastSequence === 0, completedAt)
            return Effect.map(store(p, final, renderer.finalJson), () => {
              recorded = { final, out }
            })
          })
        return Effect.map(
          Effect.either(
            ctx.runStream(p.request, p.body, p.store ? { inline: true, withReply: record } : { inline: true })
          ),
          (started) => {
            if (Either.isLeft(started)) return turnErrorResponse(started.left)
            const turn = started.right
            return Sse.response(heartbeat.produce((emit, emitNow) =>
              Effect.asVoid(renderLive(p, turn, {
                renderer,
                publish: (events) => emit(framesOf(events)),
                // The events of the start and of each chunk are in memory: written without waiting on the reader
                // (an inline turn runs in this fiber and must not wait on its client).
                publishNow: (events) => Effect.sync(() => emitNow(framesOf(events))),
                recorded: () => recorded
              }))
            ))
          }
        )
      }

      /**
       * Renders a foreground turn into `live` as it runs, stores how it ended, then publishes the terminal
       * event; returns the final resource. Interrupted (the caller went away), it leaves a fiber in the channel's
       * scope that awaits the turn and stores how it ended, and returns none.
       */
      const renderLive = (prepared: Prepared, turn: TurnStream, live: Live): Effect.Effect<Option.Option<Obj>> =>
        // Plain `flatMap`s, no generator: this runs once per streamed response.
        Effect.uninterruptibleMask((restore) => {
          const renderer = live.renderer
          const rendered = Effect.zipRight(
            Effect.zipRight(
              live.publishNow(renderer.start("in_progress")),
              render(prepared, turn, renderer, live.publishNow)
            ),
            turn.result
          )
          return Effect.flatMap(Effect.exit(restore(rendered)), (exit): Effect.Effect<Option.Option<Obj>> => {
            // Interrupted: the reader stopped (the caller went away).
            if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) {
              const left = Effect.uninterruptibleMask((restoreLeft) =>
                Effect.flatMap(
                  Effect.exit(restoreLeft(turn.result)),
                  (awaited) => settle(prepared, renderer, endingOf(awaited, () => "shutdown"), true, live.recorded())
                )
              )
              return Effect.as(Effect.forkIn(Effect.interruptible(left), scope), Option.none())
            }
            // The terminal event is written even when this fiber was told to stop while its inline turn ran
            // (shutdown): the write waits only on the client, which it stops waiting for when the client leaves.
            return Effect.flatMap(
              settle(prepared, renderer, endingOf(exit, () => "shutdown"), false, live.recorded()),
              ({ final, out }) => Effect.as(live.publish(out), Option.some(final))
            )
          })
        })

      /**
       * Ends a rendering and stores the final resource; returns it and the last events. A rendering the turn has
       * ended and stored already (`Live.recorded`) is only concluded.
       */
      const settle = (
        prepared: Prepared,
        renderer: StreamRenderer,
        ending: Ending,
        whole: boolean,
        recorded?: Recorded
      ): Effect.Effect<Recorded> =>
        Effect.suspend(() => {
          if (recorded !== undefined) return Effect.as(conclude(prepared, recorded.final), recorded)
          const out: Array<RenderedEvent> = []
          return Effect.flatMap(
            endRendering(prepared, renderer, ending, out, whole),
            (final) =>
              Effect.as(
                Effect.zipRight(store(prepared, final, renderer.finalJson), conclude(prepared, final)),
                { final, out }
              )
          )
        })

      /**
       * Renders a background turn into its `LiveRun`, persisting every event, then stores it. Only the wait for
       * the turn is interruptible: interrupted by the cancel route, the response ends `cancelled`; by the channel's
       * scope closing under it (shutdown), `incomplete`.
       */
      const drive = (prepared: Prepared, turn: TurnStream, background: Background, renderer: StreamRenderer) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function*() {
            const publish = (events: ReadonlyArray<RenderedEvent>) =>
              events.length === 0 ?
                Effect.void :
                Effect.zipRight(
                  LiveRun.append(background.run, events),
                  ctx.state.appendResponseEvents(prepared.id, storedEvents(events))
                )
            const exit = yield* Effect.exit(
              restore(Effect.zipRight(render(prepared, turn, renderer, publish), turn.result))
            )
            const ending = endingOf(exit, () => background.cancelled ? "cancelled" : "shutdown")
            const out: Array<RenderedEvent> = []
            const final = yield* endRendering(prepared, renderer, ending, out, false)
            yield* publish(out)
            if (!background.deleted) yield* store(prepared, final)
            yield* conclude(prepared, final)
          })
        ).pipe(
          Effect.ensuring(Effect.suspend(() => {
            live.delete(prepared.id)
            return LiveRun.finish(background.run)
          }))
        )

      const startBackground = (prepared: Prepared, turn: TurnStream) =>
        Effect.gen(function*() {
          const renderer = new StreamRenderer(prepared.skeleton)
          const initial = renderer.start("queued")
          const background: Background = {
            run: yield* LiveRun.make(initial),
            fiber: undefined,
            cancelled: false,
            deleted: false
          }
          live.set(prepared.id, background)
          yield* ctx.state.appendResponseEvents(prepared.id, storedEvents(initial))
          yield* store(prepared, resource(prepared.skeleton, { status: "in_progress", output: [] }))
          // Interruptible explicitly: a fork inherits the handler's flags, and cancel must be able to interrupt.
          background.fiber = yield* Effect.forkIn(
            Effect.interruptible(drive(prepared, turn, background, renderer)),
            scope
          )
          return background
        })

      const follow = (background: Background, after: number) =>
        Sse.response(heartbeat.withHeartbeat(LiveRun.follow(background.run, after)))

      // Handlers run uninterruptibly: a caller that goes away does not stop the stored response from being
      // written; only the wait for a turn under `on_disconnect: cancel` is interruptible (the turn makes it so).
      const create = ChannelModule.handler((input) =>
        authorized(input.request) ?
          Effect.flatMap(prepare(input), (prepared) => {
            if (Either.isLeft(prepared)) return Effect.succeed(refusalResponse(prepared.left))
            const p = prepared.right
            return p.body.stream !== true && p.body.background !== true ? runBlocking(p) : startStreamed(p)
          }) :
          Effect.succeed(unauthorized)
      )

      /** A streamed or background create: the turn starts, then the response renders as it runs. */
      const startStreamed = (p: Prepared) =>
        Effect.gen(function*() {
          if (p.body.background !== true) return yield* startForeground(p)
          const started = yield* Effect.either(ctx.runStream(p.request, p.body))
          if (Either.isLeft(started)) return turnErrorResponse(started.left)
          const background = yield* startBackground(p, started.right)
          return p.body.stream === true ?
            follow(background, 0) :
            json(resource(p.skeleton, { status: "queued", output: [] }))
        })

      const notFound = (id: string) => errorResponse(404, "response_not_found", `No response found with id '${id}'.`)

      const retrieve = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const id = input.params["id"] ?? ""
          const stored = yield* getOwn(id, input)
          if (Option.isNone(stored)) return notFound(id)
          if (input.query.get("stream") !== "true") return json(stored.value.response)
          const rawAfter = input.query.get("starting_after")
          const after = rawAfter === null ? 0 : Number(rawAfter)
          if (!Number.isInteger(after) || after < 0) {
            return errorResponse(
              400,
              "invalid_request",
              "starting_after must be a non-negative integer",
              "starting_after"
            )
          }
          const response = stored.value.response as Obj
          if (response["background"] !== true) {
            return errorResponse(
              400,
              "invalid_request",
              "only background responses can be streamed again; create it with background: true",
              "stream"
            )
          }
          const background = live.get(id)
          if (background !== undefined) return follow(background, after)
          const events = yield* ctx.state.responseEvents(id, after)
          return Sse.response(
            Stream.fromIterable(events.map((e) => {
              const event = e.event as { readonly type: string; readonly data: string }
              return eventFrame(event.type, event.data)
            })).pipe(Stream.rechunk(1024))
          )
        })
      )

      const remove = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const id = input.params["id"] ?? ""
          if (Option.isNone(yield* getOwn(id, input))) return notFound(id)
          const background = live.get(id)
          if (background !== undefined) background.deleted = true
          const deleted = yield* ctx.state.deleteResponse(id)
          if (!deleted) return notFound(id)
          return json({ id, object: "response", deleted: true })
        })
      )

      const cancel = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const id = input.params["id"] ?? ""
          const stored = yield* getOwn(id, input)
          if (Option.isNone(stored)) return notFound(id)
          const response = stored.value.response as Obj
          if (response["background"] !== true) {
            return errorResponse(400, "invalid_request", "only background responses can be cancelled")
          }
          const background = live.get(id)
          if (background?.fiber === undefined) return json(response)
          background.cancelled = true
          // Returns once the run has ended and stored its final state (a run that already finished keeps it).
          yield* Fiber.interrupt(background.fiber)
          const after = yield* ctx.state.getResponse(id)
          return json(Option.isSome(after) ? after.value.response : response)
        })
      )

      const inputItems = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const id = input.params["id"] ?? ""
          const stored = yield* getOwn(id, input)
          if (Option.isNone(stored)) return notFound(id)
          const parsed = listQuery(input.query)
          if (Either.isLeft(parsed)) return parsed.left
          const { after, limit, order } = parsed.right
          const all = order === "asc" ? [...stored.value.inputItems] : [...stored.value.inputItems].reverse()
          let start = 0
          if (after !== null) {
            const at = all.findIndex((item) => (item as InputItem).id === after)
            if (at === -1) return errorResponse(400, "invalid_request", `no input item with id '${after}'`, "after")
            start = at + 1
          }
          const data = all.slice(start, start + limit) as ReadonlyArray<InputItem>
          return json({
            object: "list",
            data,
            first_id: data[0]?.id ?? null,
            last_id: data[data.length - 1]?.id ?? null,
            has_more: start + limit < all.length
          })
        })
      )

      const startSocketTurn = (
        body: Obj,
        input: RouteInput,
        previous: (id: string) => Effect.Effect<Option.Option<Previous>>
      ): Effect.Effect<Either.Either<Socket.StartedTurn, Refusal>> =>
        Effect.gen(function*() {
          const prepared = yield* prepareBody(body, input, previous, "websocket")
          if (Either.isLeft(prepared)) return Either.left(prepared.left)
          const p = prepared.right
          const started = yield* Effect.either(ctx.runStream(p.request, p.body))
          if (Either.isLeft(started)) return Either.left(turnRefusal(started.left))
          const turn = started.right
          return Either.right<Socket.StartedTurn>({
            id: p.id,
            sessionKey: p.sessionKey,
            run: (publish) =>
              renderLive(p, turn, {
                renderer: new StreamRenderer(p.skeleton),
                publish,
                publishNow: publish,
                recorded: () => undefined
              })
          })
        })

      const socket = Socket.endpoint("/responses", {
        authorized,
        unauthorized,
        start: startSocketTurn,
        stored: storedPrevious,
        draining: ctx.draining,
        maxJsonDepth: ctx.settings.maxJsonDepth,
        maxJsonItems: ctx.settings.maxJsonItems,
        pingInterval: Duration.decode(options.pingInterval ?? Duration.seconds(30)),
        maxCached: options.maxCachedResponses ?? 16,
        // A frame's worth of backlog (the body limit) and then some: a reader this far behind is not reading.
        maxBuffered: 4 * ctx.settings.maxBodyBytes
      })

      /**
       * `POST /responses/compact`: the history of `previous_response_id` (if given) and `input`, sealed into one
       * `compaction` item (see Compaction.ts); `model` is required, as in the spec.
       */
      const compact = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const raw = yield* Effect.either(readJsonObject(input.request, ctx.settings))
          if (Either.isLeft(raw)) return errorResponse(raw.left.status, raw.left.type, raw.left.message)
          const body = raw.right
          const model = body["model"]
          if (typeof model !== "string" || model.length === 0) {
            return errorResponse(400, "missing_required_parameter", "model is required (a string)", "model")
          }
          const user = input.isolation.user
          const messages: Array<Message> = []
          const previousId = body["previous_response_id"]
          if (previousId != null) {
            if (typeof previousId !== "string") {
              return errorResponse(
                400,
                "invalid_request",
                "previous_response_id must be a string",
                "previous_response_id"
              )
            }
            const previous = yield* getOwn(previousId, input)
            if (Option.isNone(previous)) {
              return errorResponse(
                404,
                "previous_response_not_found",
                `Previous response with id '${previousId}' not found.`,
                "previous_response_id"
              )
            }
            const key = isolationKey(previousOf(previous.value, name).sessionKey)
            if (Either.isRight(key)) {
              const session = yield* ctx.sessionIdFor(key.right)
              messages.push(...(yield* ctx.state.loadHistory(session, compactHistoryLimit)))
            }
          }
          const rawInput = body["input"]
          if (rawInput != null) {
            if (typeof rawInput !== "string" && !Array.isArray(rawInput)) {
              return errorResponse(400, "invalid_request", "input must be a string or a list of items", "input")
            }
            const parsed = parseInput(rawInput, (kind, n) => `${kind}_compact_in${n}`, (c) => sealer.open(c, user))
            if ("message" in parsed) return errorResponse(400, "invalid_request", parsed.message, parsed.param)
            messages.push(...parsed.messages)
          }
          if (messages.length === 0) {
            return errorResponse(
              400,
              "invalid_request",
              "nothing to compact: send input or previous_response_id",
              "input"
            )
          }
          const id = yield* issueId("resp_")
          const createdAt = yield* Time.now
          const tokens = Compaction.estimateTokens(messages)
          return json({
            id,
            object: "response.compaction",
            created_at: Time.toEpochSeconds(createdAt),
            output: [{ id: `cmp_${id.slice(5)}`, type: "compaction", encrypted_content: sealer.seal(messages, user) }],
            usage: {
              input_tokens: tokens,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: 0,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: tokens
            }
          })
        })
      )

      return {
        path: options.path ?? "/v1",
        routes: [
          { method: "POST", path: "/responses", handler: create, body: "json" },
          { method: "POST", path: "/responses/compact", handler: compact, body: "json" },
          { method: "GET", path: "/responses/:id", handler: retrieve },
          { method: "DELETE", path: "/responses/:id", handler: remove },
          { method: "GET", path: "/responses/:id/input_items", handler: inputItems },
          { method: "POST", path: "/responses/:id/cancel", handler: cancel },
          ...conversations.routes
        ],
        upgrades: [socket],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        kind: "programmatic",
        describe: "OpenAI Responses API (JSON, SSE, WebSocket, background, compaction, conversations)"
      }
    }))
}
