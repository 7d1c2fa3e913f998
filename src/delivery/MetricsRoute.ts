/**
 * `GET /metrics`: every metric in Effect's registry in the Prometheus text format (see `internal/Prometheus`),
 * as a channel. Counters and histograms are updated where things happen (requests, turns, pushes, task failures,
 * authorization denials); the gauges of what is live now (sessions, running and queued turns, waiting and
 * running tasks, the history cache) are read at each scrape, so nothing is polled between scrapes.
 *
 * Protected like the admin routes: an admin key (`AGENT_HOST_ADMIN_KEYS`, or `AGENT_HOST_API_KEYS`) as a Bearer
 * token; with neither, the route is not mounted (404). Metric labels name channels and task kinds, never users.
 */
import { HttpServerResponse } from "@effect/platform"
import { Effect, Metric, Option } from "effect"
import type { Channel } from "../core/Channel.js"
import * as ChannelModule from "../core/Channel.js"
import { Sessions } from "../core/Sessions.js"
import { Turns } from "../core/Turns.js"
import * as Prometheus from "../internal/Prometheus.js"
import { adminGuard, adminKeys } from "./AdminRoutes.js"
import { TaskRunner } from "./TaskRunner.js"

export interface Options {
  readonly name?: string
  /** The route's path (default `/metrics`). */
  readonly path?: string
}

/** Session actors alive now (running, queued or idle). */
export const sessionsLive = Metric.gauge("agent_host_sessions_live", {
  description: "session actors alive (running a turn, queued or idle)"
})
/** Turns running now. */
export const turnsRunning = Metric.gauge("agent_host_turns_running", { description: "turns running now" })
/** Turns waiting behind a running turn of their session. */
export const turnsQueued = Metric.gauge("agent_host_turns_queued", {
  description: "turns waiting behind a running turn of their session"
})
/** Tasks waiting to run (ready, or waiting to retry). */
export const tasksPending = Metric.gauge("agent_host_tasks_pending", {
  description: "tasks waiting to run (ready, or waiting for a retry)"
})
/** Tasks running now. */
export const tasksRunning = Metric.gauge("agent_host_tasks_running", { description: "tasks running now" })
/** The estimated heap size of the cache of recent session histories. */
export const historyCacheBytes = Metric.gauge("agent_host_history_cache_bytes", {
  description: "estimated bytes held by the cache of recent session histories"
})

export const make = (options: Options = {}): Channel<never, Sessions | Turns> =>
  ChannelModule.make(options.name ?? "metrics", (ctx) =>
    Effect.gen(function*() {
      const sessions = yield* Sessions
      const turns = yield* Turns
      const runner = yield* Effect.serviceOption(TaskRunner)
      const keys = adminKeys(ctx.settings)
      const path = options.path ?? "/metrics"
      if (keys.length === 0) {
        yield* Effect.logInfo(
          `${path} is off: set AGENT_HOST_ADMIN_KEYS (or AGENT_HOST_API_KEYS) to serve it`
        ).pipe(Effect.annotateLogs({ channel: ctx.channel }))
        return {
          path: "",
          kind: "programmatic",
          routes: [],
          describe: "metrics (off: no admin key)"
        } satisfies ChannelModule.ChannelContribution
      }

      const gauges = Effect.gen(function*() {
        const stats = yield* sessions.stats
        yield* Metric.set(sessionsLive, stats.live)
        yield* Metric.set(turnsRunning, stats.running)
        yield* Metric.set(turnsQueued, stats.queued)
        const cache = yield* turns.historyCache
        yield* Metric.set(historyCacheBytes, cache.bytes)
        if (Option.isSome(runner)) {
          const tasks = yield* runner.value.stats
          yield* Metric.set(tasksPending, tasks.live - tasks.running)
          yield* Metric.set(tasksRunning, tasks.running)
        }
      })

      const scrape = adminGuard(keys)(() =>
        Effect.zipRight(
          gauges,
          Effect.sync(() =>
            HttpServerResponse.text(Prometheus.format(Metric.unsafeSnapshot()), {
              contentType: Prometheus.contentType,
              headers: { "cache-control": "no-store" }
            })
          )
        )
      )
      return {
        path: "",
        kind: "programmatic",
        routes: [{ method: "GET", path, handler: scrape }],
        describe: "Prometheus metrics"
      } satisfies ChannelModule.ChannelContribution
    }))
