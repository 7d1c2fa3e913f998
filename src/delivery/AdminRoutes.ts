/**
 * Admin routes for the task runner, as a channel: `GET /admin/tasks?status=failed&limit=100` lists tasks
 * (dead letters with `status=failed`), `GET /admin/tasks/:id` shows one, `POST /admin/tasks/:id/replay` runs a
 * failed or cancelled task again, `POST /admin/tasks/:id/cancel` cancels an unfinished one.
 *
 * Tasks carry other users' data (response ids, chat ids, browser ids, payloads), so the routes always need an
 * admin key: `AGENT_HOST_ADMIN_KEYS` (Bearer), or `AGENT_HOST_API_KEYS` when no admin keys are set. With
 * neither, the routes are not mounted at all (404).
 */
import { Effect, Option, Schema } from "effect"
import type { Channel } from "../core/Channel.js"
import * as ChannelModule from "../core/Channel.js"
import { makeMatcher } from "../http/ApiKeys.js"
import { errorJson, json } from "../http/HttpBody.js"
import type { TaskRecord } from "./TaskRunner.js"
import { TaskRunner, TaskStatus } from "./TaskRunner.js"

export interface Options {
  readonly name?: string
  readonly path?: string
}

/** A task as the admin API shows it; the payload is parsed back to JSON. */
export const view = (record: TaskRecord) => ({
  id: record.id,
  name: record.name,
  idempotency_key: record.idempotencyKey,
  status: record.status,
  attempts: record.attempts,
  phase: record.phase,
  next_attempt_at: record.nextAttemptAt,
  last_error: record.lastError,
  created_at: record.createdAt,
  updated_at: record.updatedAt
})

const isStatus = Schema.is(TaskStatus)

/** The keys admin routes accept: `AGENT_HOST_ADMIN_KEYS`, or `AGENT_HOST_API_KEYS` when no admin keys are set. */
export const adminKeys = (settings: ChannelModule.HostSettings): ReadonlyArray<string> =>
  settings.adminKeys.length > 0 ? settings.adminKeys : settings.apiKeys

const unauthorized = errorJson(
  401,
  "unauthorized",
  "an admin key is required: send Authorization: Bearer <key> (AGENT_HOST_ADMIN_KEYS, or AGENT_HOST_API_KEYS)"
)

/** Wraps route handlers so they answer 401 unless the request carries one of `keys` (see `adminKeys`). */
export const adminGuard = (keys: ReadonlyArray<string>) => {
  const authorized = makeMatcher(keys)
  return (handler: ChannelModule.Route["handler"]): ChannelModule.Route["handler"] => (input) =>
    authorized(input.request) ? handler(input) : Effect.succeed(unauthorized)
}

export const make = (options: Options = {}): Channel<never, TaskRunner> =>
  ChannelModule.make(options.name ?? "admin", (ctx) =>
    Effect.gen(function*() {
      const runner = yield* TaskRunner
      const keys = adminKeys(ctx.settings)
      if (keys.length === 0) {
        yield* Effect.logInfo(
          "admin routes are off: set AGENT_HOST_ADMIN_KEYS (or AGENT_HOST_API_KEYS) to serve them"
        ).pipe(Effect.annotateLogs({ channel: ctx.channel }))
        return {
          path: options.path ?? "/admin",
          kind: "programmatic",
          routes: [],
          describe: "task runner admin (off: no admin key)"
        } satisfies ChannelModule.ChannelContribution
      }
      const guard = adminGuard(keys)

      const list = guard((input) =>
        Effect.gen(function*() {
          const status = input.query.get("status")
          if (status !== null && !isStatus(status)) {
            return errorJson(
              400,
              "invalid_request",
              `status must be one of pending, running, succeeded, failed, cancelled (got "${status.slice(0, 40)}")`
            )
          }
          const limitText = input.query.get("limit")
          const limit = limitText === null ? 100 : Number(limitText)
          if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
            return errorJson(400, "invalid_request", "limit must be an integer from 1 to 1000")
          }
          const tasks = yield* runner.list(status === null ? { limit } : { status, limit })
          return json({ tasks: tasks.map(view) })
        })
      )

      const show = guard((input) =>
        Effect.map(runner.get(input.params.id ?? ""), (found) =>
          Option.isSome(found) ?
            json({ task: view(found.value) }) :
            errorJson(404, "not_found", `no task with id ${input.params.id}`))
      )

      const replay = guard((input) =>
        Effect.gen(function*() {
          const id = input.params.id ?? ""
          const found = yield* runner.get(id)
          if (Option.isNone(found)) return errorJson(404, "not_found", `no task with id ${id}`)
          const replayed = yield* Effect.either(runner.replay(id))
          if (replayed._tag === "Left") return errorJson(409, "conflict", replayed.left.message)
          const after = yield* runner.get(id)
          return json({ task: view(Option.getOrElse(after, () => found.value)) }, 202)
        })
      )

      const cancel = guard((input) =>
        Effect.gen(function*() {
          const id = input.params.id ?? ""
          const found = yield* runner.get(id)
          if (Option.isNone(found)) return errorJson(404, "not_found", `no task with id ${id}`)
          const cancelled = yield* runner.cancel(id)
          if (!cancelled) {
            return errorJson(409, "conflict", `task ${id} is ${found.value.status}; it cannot be cancelled`)
          }
          return json({ cancelled: true, id })
        })
      )

      return {
        path: options.path ?? "/admin",
        kind: "programmatic",
        routes: [
          { method: "GET", path: "/tasks", handler: list },
          { method: "GET", path: "/tasks/:id", handler: show },
          { method: "POST", path: "/tasks/:id/replay", handler: replay },
          { method: "POST", path: "/tasks/:id/cancel", handler: cancel }
        ],
        describe: "task runner admin"
      } satisfies ChannelModule.ChannelContribution
    }))
