/**
 * The OpenAI Responses API channel: `POST /v1/responses` (JSON or SSE), `GET /v1/responses/{id}` (with
 * `?stream=true&starting_after=N` for background responses), `DELETE`, `GET .../input_items` and
 * `POST .../cancel`, so the official `openai` client works against the host unchanged.
 *
 * Every turn's rendering runs detached in the channel's scope, not in the request: a client that goes away
 * (or never waits, `background: true`) loses nothing; the response is completed and stored all the same.
 * A turn the host stops at shutdown (its grace period over) ends the run as `incomplete` (reason
 * `server_shutdown`) with the output so far: streams get `response.incomplete`, the stored response says so,
 * and a blocking request gets a 503 with `retry-after`.
 * Streams follow a `LiveRun` (the rendered events so far plus a wake-up signal); background runs also
 * persist their events so a later `GET ...?stream=true` replays exactly what a live client saw.
 *
 * At startup (before anything is served) the channel ends the background responses a dead process left `queued`
 * or `in_progress` (kill -9, a crash): each becomes `incomplete` with `incomplete_details.reason` =
 * `server_restarted`, keeping the output it had, and its stored stream gets the closing events and
 * `response.incomplete`, so neither polling nor a `?stream=true` replay waits forever. The state dir has a single
 * owner, so whatever is unfinished at startup belongs to a process that is gone.
 */
import type { Scope } from "effect"
import { Duration, Effect, Either, Exit, Fiber, Option, Stream } from "effect"
import type { Channel, ChannelContext, ChannelHooks, RouteInput, TurnStream } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { OnDisconnect } from "../../core/Sessions.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import { isShutdown, turnErrorHeaders, turnErrorStatus } from "../../domain/Errors.js"
import { type IsolationKey, issueId } from "../../domain/Ids.js"
import * as Time from "../../domain/Time.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { describeBodyError, json, readJson } from "../../http/HttpBody.js"
import { ON_DISCONNECT_HEADER, onDisconnectOf } from "../../http/OnDisconnect.js"
import * as Sse from "../../http/Sse.js"
import { sameUser, userScopedKey } from "../../http/UserScope.js"
import { LiveRun } from "./LiveRun.js"
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
import type { CreateResponseBody } from "./Wire.js"
import { decodeCreateBody, errorResponse } from "./Wire.js"

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
}

/** Metadata key set on a response whose reply went to other channels only. */
export const OUT_OF_BAND_KEY = "agent_host_delivery"

type Obj = Record<string, unknown>

/** A stored stream event: its type and its JSON text, as `drive` persists it. */
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

const turnErrorResponse = (error: TurnError) => {
  const status = turnErrorStatus(error)
  switch (error._tag) {
    case "InvalidRequest":
      return errorResponse(status, "invalid_request", error.message, error.param ?? null)
    case "InvalidIsolationKey":
      return errorResponse(status, "invalid_isolation_key", error.message)
    case "SessionBusy":
      return errorResponse(status, "session_busy", error.message)
    case "SessionCapacityExceeded":
      return errorResponse(status, "capacity_exceeded", error.message)
    case "MailboxFull":
      return errorResponse(status, "session_queue_full", error.message, null, turnErrorHeaders(error))
    case "PushQueueFull":
      return errorResponse(status, "push_queue_full", error.message, null, turnErrorHeaders(error))
    case "TurnCancelled":
      return isShutdown(error) ?
        errorResponse(status, "server_shutting_down", error.message, null, turnErrorHeaders(error)) :
        errorResponse(status, "turn_cancelled", error.message)
    case "AccessDenied":
      return errorResponse(status, error.reasonCode.length > 0 ? error.reasonCode : "access_denied", error.message)
    case "LinkRequiredError":
      return errorResponse(
        status,
        "link_required",
        error.url === undefined ? error.message : `${error.message} (${error.url})`
      )
    case "AgentError":
      return errorResponse(status, "server_error", error.message)
  }
}

/** The failure a response records: `server_error` is the code every client knows. */
const failureOf = (error: TurnError) => ({ code: "server_error", message: error.message })

/** `incomplete_details.reason` of a response whose turn the host stopped at shutdown. */
export const SHUTDOWN_REASON = "server_shutdown"

// Response ids double as handles for GET/DELETE, so they come from the CSPRNG, not a seedable generator.
const newResponseId = issueId("resp_")

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
}

export const make = (options: Options = {}): Channel => {
  const name = options.name ?? "responses"
  const defaultModel = options.model ?? "agent"
  const heartbeat = Duration.decode(options.heartbeatInterval ?? Duration.seconds(15))
  return ChannelModule.make<never, never>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const scope: Scope.Scope = yield* Effect.scope
      const authorized = makeChecker(ctx.settings.apiKeys)
      const live = new Map<string, LiveRun>()

      /** Ends what a dead process left running (see the module comment); runs before any route is served. */
      const endInterruptedRuns = Effect.gen(function*() {
        const unfinished = yield* ctx.state.responsesWithStatus(["queued", "in_progress"])
        for (const stored of unfinished) {
          const response = stored.response as Obj
          const events = (yield* ctx.state.responseEvents(stored.id, 0)).flatMap(decodeStoredEvent)
          const { final, out } = endInterrupted(response, events)
          // Events first: if this is cut short too, the next startup finds the terminal event and only stores.
          yield* ctx.state.appendResponseEvents(
            stored.id,
            out.map((e) => ({ sequence: e.sequence, event: { type: e.type, data: e.json } }))
          )
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

      const store = (prepared: Prepared, response: Obj) =>
        prepared.store ?
          ctx.state.putResponse({
            id: prepared.id,
            sessionKey: prepared.sessionKey,
            ...(prepared.userKey === undefined ? {} : { userKey: prepared.userKey }),
            response,
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

      /** Reads, validates and maps a create request; a Left is the HTTP error to answer with. */
      const prepare = (input: RouteInput) =>
        Effect.gen(function*() {
          const raw = yield* readJson(input.request, ctx.settings).pipe(Effect.either)
          if (raw._tag === "Left") {
            const problem = describeBodyError(raw.left)
            return Either.left(errorResponse(problem.status, problem.type, problem.message))
          }
          if (raw.right === null || typeof raw.right !== "object" || Array.isArray(raw.right)) {
            return Either.left(errorResponse(400, "invalid_request", "the request body must be a JSON object"))
          }
          const decoded = decodeCreateBody(raw.right)
          if (!("body" in decoded)) {
            return Either.left(errorResponse(400, "invalid_request", decoded.message, decoded.param))
          }
          const body = decoded.body
          if (body.input == null) {
            return Either.left(errorResponse(400, "missing_required_parameter", "input is required", "input"))
          }
          if (body.previous_response_id != null && body.conversation != null) {
            return Either.left(
              errorResponse(
                400,
                "invalid_request",
                "send previous_response_id or conversation, not both",
                "conversation"
              )
            )
          }
          if (body.background === true && body.store === false) {
            return Either.left(
              errorResponse(400, "invalid_request", "background responses must be stored (store: true)", "store")
            )
          }
          const explicit = onDisconnectOf(input.request, body.on_disconnect, "continue")
          if (typeof explicit !== "string") {
            return Either.left(errorResponse(400, "invalid_request", explicit.message, explicit.param))
          }
          const asked = body.on_disconnect != null || (input.request.headers[ON_DISCONNECT_HEADER] ?? "") !== ""
          if (body.background === true && asked && explicit === "cancel") {
            return Either.left(
              errorResponse(
                400,
                "invalid_request",
                "a background response has no caller to wait for it: on_disconnect cancel needs a foreground request",
                "on_disconnect"
              )
            )
          }
          const onDisconnect: OnDisconnect = body.background === true ?
            "continue" :
            asked ?
            explicit :
            options.onDisconnect ?? "continue"
          const target = parseResponseTarget(body.response_target)
          if (target !== undefined && "message" in target) {
            return Either.left(errorResponse(400, "invalid_request", target.message, target.param))
          }
          const id = yield* newResponseId
          const base = id.slice(5)
          const parsed = parseInput(body.input, (kind, n) => `${kind}_${base}_in${n}`)
          if ("message" in parsed) {
            return Either.left(errorResponse(400, "invalid_request", parsed.message, parsed.param))
          }

          let sessionKey: string
          if (body.previous_response_id != null) {
            const previous = yield* getOwn(body.previous_response_id, input)
            if (Option.isNone(previous)) {
              return Either.left(errorResponse(
                404,
                "previous_response_not_found",
                `Previous response with id '${body.previous_response_id}' not found.`,
                "previous_response_id"
              ))
            }
            sessionKey = previous.value.sessionKey ?? `${name}:${body.previous_response_id}`
          } else if (body.conversation != null) {
            // A conversation id is the caller's name for it: each user has their own conversation of that name.
            sessionKey = userScopedKey(
              input.isolation.user,
              `${name}:conv:${typeof body.conversation === "string" ? body.conversation : body.conversation.id}`
            )
          } else {
            sessionKey = input.isolation.chat ?? `${name}:${id}`
          }
          const identity = identityOf(name, body)
          const attributes: Record<string, unknown> = { responseId: id }
          if (body.previous_response_id != null) attributes["previousResponseId"] = body.previous_response_id
          const request: ChannelRequest = {
            channel: name,
            operation: "message.create",
            input: parsed.messages,
            session: { isolationKey: sessionKey as IsolationKey },
            ...(identity === undefined ? {} : { identity }),
            ...(target === undefined ? {} : { responseTarget: target }),
            options: runOptions(body),
            attributes,
            stream: body.stream === true,
            onDisconnect
          }
          const createdAt = yield* Time.now
          return Either.right<Prepared>({
            id,
            body,
            request,
            skeleton: makeSkeleton(id, createdAt, body, defaultModel),
            items: parsed.items,
            sessionKey,
            userKey: input.isolation.user,
            store: body.store !== false,
            createdAt
          })
        })

      /** A blocking turn, run detached: the final resource, or the turn's error. */
      const runBlocking = (prepared: Prepared) =>
        Effect.gen(function*() {
          const outcome = yield* ctx.run(prepared.request, prepared.body).pipe(Effect.either)
          const completedAt = yield* Time.now
          if (outcome._tag === "Left") {
            const error = outcome.left
            if (isShutdown(error)) {
              yield* store(
                prepared,
                resource(prepared.skeleton, { status: "incomplete", output: [], incompleteReason: SHUTDOWN_REASON })
              )
            } else if (error._tag === "AgentError" || error._tag === "TurnCancelled") {
              yield* store(
                prepared,
                resource(prepared.skeleton, { status: "failed", output: [], error: failureOf(error) })
              )
            }
            return Either.left(error)
          }
          const { originating: shaped, result } = outcome.right
          let final: Obj
          if (Option.isSome(shaped)) {
            const response = shaped.value.response
            const { incompleteReason, status } = statusOf(response.finishReason)
            final = resource(prepared.skeleton, {
              status,
              output: outputItems(prepared.id, response, status === "completed" ? "completed" : "incomplete"),
              usage: usageJson(response.usage),
              ...(incompleteReason === undefined ? {} : { incompleteReason }),
              completedAt: status === "completed" ? completedAt : null
            })
          } else {
            final = resource(prepared.skeleton, {
              status: "completed",
              output: [],
              usage: usageJson(result.response.usage),
              completedAt,
              metadata: outOfBand(prepared)
            })
          }
          yield* store(prepared, final)
          return Either.right(final)
        })

      const outOfBand = (prepared: Prepared): Record<string, string> => ({
        ...prepared.body.metadata,
        [OUT_OF_BAND_KEY]: "out_of_band"
      })

      /**
       * Renders a started streaming turn into `run`, persisting events for background runs, then stores it. Only
       * the wait for the turn is interruptible: ending the run and storing it always happen, also when the
       * channel's scope closes under it (shutdown), which ends the run as stopped by shutdown.
       */
      const drive = (prepared: Prepared, turn: TurnStream, run: LiveRun, renderer: StreamRenderer) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.gen(function*() {
            const background = prepared.body.background === true
            const publish = (events: Array<RenderedEvent>) =>
              Effect.suspend(() => {
                if (events.length === 0) return Effect.void
                run.append(events)
                return background ?
                  ctx.state.appendResponseEvents(
                    prepared.id,
                    events.map((e) => ({ sequence: e.sequence, event: { type: e.type, data: e.json } }))
                  ) :
                  Effect.void
              })
            const target = prepared.request.responseTarget
            // A reply that may go elsewhere is not shown live: what the caller gets is decided after the turn.
            const liveText = target === undefined || target.kind === "originating"
            const consume = Effect.gen(function*() {
              if (liveText) {
                yield* Stream.runForEachChunk(turn.updates, (chunk) =>
                  Effect.suspend(() => {
                    const out: Array<RenderedEvent> = []
                    for (const update of chunk) renderer.update(update, out)
                    return publish(out)
                  }))
              } else {
                yield* Stream.runDrain(turn.updates)
              }
              return yield* turn.result
            })
            // Interruptible explicitly: forked from an uninterruptible region, and cancel must be able to stop it.
            const consuming = yield* Effect.fork(Effect.interruptible(Effect.either(consume)))
            run.consuming = consuming
            // The caller went away (on_disconnect: cancel) before the consumer existed.
            if (run.abandoned) yield* Fiber.interruptFork(consuming)
            // The drive is interrupted only when the channel's scope closes (shutdown): stop consuming, end the run.
            const awaited = yield* Effect.exit(restore(Fiber.await(consuming)))
            if (Exit.isFailure(awaited)) yield* Fiber.interrupt(consuming)
            // An interrupted consumer means cancel (the cancel route interrupts it).
            const outcome = Exit.isFailure(awaited) ?
              "shutdown" as const :
              Exit.isSuccess(awaited.value) ?
              awaited.value.value :
              "cancelled" as const
            const out: Array<RenderedEvent> = []
            let final: Obj
            if (
              outcome === "shutdown" || (outcome !== "cancelled" && Either.isLeft(outcome) && isShutdown(outcome.left))
            ) {
              final = renderer.end(out, { completedAt: yield* Time.now, incomplete: SHUTDOWN_REASON })
            } else if (outcome === "cancelled") {
              final = renderer.end(out, { completedAt: yield* Time.now, cancelled: true })
            } else if (outcome._tag === "Left") {
              final = renderer.end(out, { completedAt: yield* Time.now, error: failureOf(outcome.left) })
            } else {
              const { originating: shaped, result } = outcome.right
              const completedAt = yield* Time.now
              if (Option.isNone(shaped)) {
                final = renderer.end(out, { completedAt, usage: result.response.usage, metadata: outOfBand(prepared) })
              } else {
                if (!liveText) renderer.items(outputItems(prepared.id, shaped.value.response, "completed"), out)
                const usage = shaped.value.response.usage ?? result.response.usage
                final = renderer.end(out, usage === undefined ? { completedAt } : { completedAt, usage })
              }
            }
            yield* publish(out)
            if (!run.deleted) yield* store(prepared, final)
          })
        ).pipe(
          Effect.ensuring(Effect.sync(() => {
            run.finish()
            live.delete(prepared.id)
          }))
        )

      const startStreaming = (prepared: Prepared) =>
        Effect.gen(function*() {
          const background = prepared.body.background === true
          const started = yield* ctx.runStream(prepared.request, prepared.body).pipe(Effect.either)
          if (started._tag === "Left") return Either.left(turnErrorResponse(started.left))
          const run = new LiveRun()
          const renderer = new StreamRenderer(prepared.skeleton)
          const initial = renderer.start(background ? "queued" : "in_progress")
          run.append(initial)
          if (background) {
            live.set(prepared.id, run)
            yield* ctx.state.appendResponseEvents(
              prepared.id,
              initial.map((e) => ({ sequence: e.sequence, event: { type: e.type, data: e.json } }))
            )
            yield* store(prepared, resource(prepared.skeleton, { status: "in_progress", output: [] }))
          }
          // Interruptible explicitly: a fork inherits the handler's flags, and cancel must be able to interrupt.
          yield* Effect.forkIn(Effect.interruptible(drive(prepared, started.right, run, renderer)), scope)
          return Either.right(run)
        })

      const create = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          if (!authorized(input.request)) return unauthorized
          const prepared = yield* prepare(input)
          if (prepared._tag === "Left") return prepared.left
          const p = prepared.right
          if (p.body.stream === true || p.body.background === true) {
            const started = yield* startStreaming(p)
            if (started._tag === "Left") return started.left
            const run = started.right
            if (p.body.stream !== true) return json(resource(p.skeleton, { status: "queued", output: [] }))
            if (p.request.onDisconnect !== "cancel") return Sse.response(run.follow(0, heartbeat))
            // A follower that stops before the run ends is the caller going away: cancel the turn.
            return Sse.response(run.follow(0, heartbeat).pipe(Stream.ensuring(Effect.suspend(() => run.abandon()))))
          }
          const fiber = yield* Effect.forkIn(Effect.interruptible(runBlocking(p)), scope)
          const outcome = yield* (p.request.onDisconnect === "cancel" ?
            Effect.onInterrupt(Effect.interruptible(fiber.await), () => Fiber.interruptFork(fiber)) :
            fiber.await).pipe(Effect.flatten)
          return outcome._tag === "Left" ? turnErrorResponse(outcome.left) : json(outcome.right)
        })
      )

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
          const run = live.get(id)
          if (run !== undefined) return Sse.response(run.follow(after, heartbeat))
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
          const run = live.get(id)
          if (run !== undefined) run.deleted = true
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
          const run = live.get(id)
          if (run === undefined) return json(response)
          if (run.consuming !== undefined) yield* Fiber.interrupt(run.consuming)
          // Wait for the run to record the cancellation, so the answer is the final state.
          const final = run.follow(run.events.length, heartbeat)
          yield* Stream.runDrain(final)
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
          const rawLimit = input.query.get("limit")
          const limit = rawLimit === null ? 20 : Number(rawLimit)
          if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
            return errorResponse(400, "invalid_request", "limit must be an integer between 1 and 100", "limit")
          }
          const order = input.query.get("order") ?? "desc"
          if (order !== "asc" && order !== "desc") {
            return errorResponse(400, "invalid_request", "order must be asc or desc", "order")
          }
          const all = order === "asc" ? [...stored.value.inputItems] : [...stored.value.inputItems].reverse()
          const after = input.query.get("after")
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

      return {
        path: options.path ?? "/v1",
        routes: [
          { method: "POST", path: "/responses", handler: create, body: "json" },
          { method: "GET", path: "/responses/:id", handler: retrieve },
          { method: "DELETE", path: "/responses/:id", handler: remove },
          { method: "GET", path: "/responses/:id/input_items", handler: inputItems },
          { method: "POST", path: "/responses/:id/cancel", handler: cancel }
        ],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        kind: "programmatic",
        describe: "OpenAI Responses API (JSON, SSE, background)"
      }
    }))
}
