/**
 * Admin routes for the task runner, as a channel: `GET /admin/tasks?status=failed&limit=100` lists tasks
 * (dead letters with `status=failed`), `GET /admin/tasks/:id` shows one, `POST /admin/tasks/:id/replay` runs a
 * failed or cancelled task again, `POST /admin/tasks/:id/cancel` cancels an unfinished one.
 *
 * The routes run over a `TaskAdmin`: the task runner's by default; in cluster mode the persisted push messages
 * (src/cluster/PushAdmin.ts), where the list pages with `after=<id>` (the response's `next`).
 *
 * Tasks carry other users' data (response ids, chat ids, browser ids, payloads), so the routes always need an
 * admin key: `AGENT_HOST_ADMIN_KEYS` (Bearer), or `AGENT_HOST_API_KEYS` when no admin keys are set. With
 * neither, the routes are not mounted at all (404).
 */
import { Context, Effect, Option, Schema } from "effect"
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

/** Why an admin operation was refused: the HTTP status and error type it is answered with. */
export class AdminRefused extends Schema.TaggedError<AdminRefused>()("AdminRefused", {
  status: Schema.Number,
  code: Schema.String,
  message: Schema.String
}) {}

const notFound = (id: string) => new AdminRefused({ status: 404, code: "not_found", message: `no task with id ${id}` })

/** What the admin task routes run over; a task is the JSON object the API shows. */
export interface TaskAdminShape {
  /** What the routes' `describe` says. */
  readonly describe: string
  /** The values `status` may take. */
  readonly statuses: ReadonlyArray<string>
  /** Newest first; `after` (a `next` of an earlier page) continues a listing. `next` is set when there may be more. */
  readonly list: (
    options: { readonly status?: string; readonly limit: number; readonly after?: string }
  ) => Effect.Effect<
    { readonly tasks: ReadonlyArray<unknown>; readonly next?: string },
    AdminRefused
  >
  readonly get: (id: string) => Effect.Effect<Option.Option<unknown>, AdminRefused>
  /** Runs a failed or cancelled task again; the task as it is now (or the new task that runs it). */
  readonly replay: (id: string) => Effect.Effect<unknown, AdminRefused>
  /** Cancels an unfinished task: `done` once it is cancelled, false while the cancel is on its way. */
  readonly cancel: (id: string) => Effect.Effect<{ readonly done: boolean }, AdminRefused>
}

/** Provided (cluster mode), the admin routes run over it instead of the task runner. */
export class TaskAdmin extends Context.Tag("effect-agent-host/AdminRoutes/TaskAdmin")<TaskAdmin, TaskAdminShape>() {}

/** The task runner as a `TaskAdmin`. */
export const fromRunner = (runner: TaskRunner["Type"]): TaskAdminShape => ({
  describe: "task runner admin",
  statuses: TaskStatus.literals,
  list: ({ limit, status }) =>
    Effect.map(
      runner.list(status === undefined ? { limit } : { status: status as TaskStatus, limit }),
      (tasks) => ({ tasks: tasks.map(view) })
    ),
  get: (id) => Effect.map(runner.get(id), Option.map(view)),
  replay: (id) =>
    Effect.gen(function*() {
      const found = yield* runner.get(id)
      if (Option.isNone(found)) return yield* notFound(id)
      const replayed = yield* Effect.either(runner.replay(id))
      if (replayed._tag === "Left") {
        return yield* new AdminRefused({ status: 409, code: "conflict", message: replayed.left.message })
      }
      return view(Option.getOrElse(yield* runner.get(id), () => found.value))
    }),
  cancel: (id) =>
    Effect.gen(function*() {
      const found = yield* runner.get(id)
      if (Option.isNone(found)) return yield* notFound(id)
      if (!(yield* runner.cancel(id))) {
        return yield* new AdminRefused({
          status: 409,
          code: "conflict",
          message: `task ${id} is ${found.value.status}; it cannot be cancelled`
        })
      }
      return { done: true }
    })
})

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
      const admin = Option.getOrElse(yield* Effect.serviceOption(TaskAdmin), () => fromRunner(runner))
      const keys = adminKeys(ctx.settings)
      if (keys.length === 0) {
        yield* Effect.logInfo(
          "admin routes are off: set AGENT_HOST_ADMIN_KEYS (or AGENT_HOST_API_KEYS) to serve them"
        ).pipe(Effect.annotateLogs({ channel: ctx.channel }))
        return {
          path: options.path ?? "/admin",
          kind: "programmatic",
          routes: [],
          describe: `${admin.describe} (off: no admin key)`
        } satisfies ChannelModule.ChannelContribution
      }
      const guard = adminGuard(keys)
      const refused = (e: AdminRefused) => errorJson(e.status, e.code, e.message)

      const list = guard((input) =>
        Effect.gen(function*() {
          const status = input.query.get("status")
          if (status !== null && !admin.statuses.includes(status)) {
            return errorJson(
              400,
              "invalid_request",
              `status must be one of ${admin.statuses.join(", ")} (got "${status.slice(0, 40)}")`
            )
          }
          const limitText = input.query.get("limit")
          const limit = limitText === null ? 100 : Number(limitText)
          if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
            return errorJson(400, "invalid_request", "limit must be an integer from 1 to 1000")
          }
          const after = input.query.get("after")
          if (after !== null && !/^[0-9A-Za-z_-]{1,64}$/.test(after)) {
            return errorJson(400, "invalid_request", "after must be the `next` of an earlier page")
          }
          const page = yield* admin.list({
            limit,
            ...(status === null ? {} : { status }),
            ...(after === null ? {} : { after })
          })
          return json(page.next === undefined ? { tasks: page.tasks } : { tasks: page.tasks, next: page.next })
        }).pipe(Effect.catchAll((e) => Effect.succeed(refused(e))))
      )

      const show = guard((input) =>
        admin.get(input.params.id ?? "").pipe(
          Effect.map((found) =>
            Option.isSome(found) ?
              json({ task: found.value }) :
              errorJson(404, "not_found", `no task with id ${input.params.id}`)
          ),
          Effect.catchAll((e) => Effect.succeed(refused(e)))
        )
      )

      const replay = guard((input) =>
        admin.replay(input.params.id ?? "").pipe(
          Effect.map((task) => json({ task }, 202)),
          Effect.catchAll((e) => Effect.succeed(refused(e)))
        )
      )

      const cancel = guard((input) => {
        const id = input.params.id ?? ""
        return admin.cancel(id).pipe(
          Effect.map(({ done }) =>
            done ? json({ cancelled: true, id }) : json({ cancelled: false, requested: true, id }, 202)
          ),
          Effect.catchAll((e) => Effect.succeed(refused(e)))
        )
      })

      return {
        path: options.path ?? "/admin",
        kind: "programmatic",
        routes: [
          { method: "GET", path: "/tasks", handler: list },
          { method: "GET", path: "/tasks/:id", handler: show },
          { method: "POST", path: "/tasks/:id/replay", handler: replay },
          { method: "POST", path: "/tasks/:id/cancel", handler: cancel }
        ],
        describe: admin.describe
      } satisfies ChannelModule.ChannelContribution
    }))
