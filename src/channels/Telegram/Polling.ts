/**
 * Long-polling transport: a scoped `getUpdates` loop that hands each update to the channel and stores the next
 * offset (cursor `telegram:<bot_id>:offset`) after each batch, so a restarted host continues where it left off.
 * Failures back off (429 waits at least `retry_after`); a 409 Conflict (another consumer) leaves it idle.
 */
import type { Schedule, Scope } from "effect"
import { Duration, Effect, Option, Schedule as ScheduleModule, Schema } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { BotApiError } from "./BotApi.js"
import * as BotApi from "./BotApi.js"
import type { Update } from "./Updates.js"
import { allowedUpdates, decodeUpdate } from "./Updates.js"

export interface Options {
  /** Cursor name of the stored offset. */
  readonly cursor: string
  /** Long-poll timeout in seconds. */
  readonly timeoutSeconds: number
  /** Delays between failed getUpdates calls. */
  readonly backoff: Schedule.Schedule<unknown, unknown>
}

/**
 * The poll loop; it runs until shutdown starts (`ctx.draining`: updates taken by then are handled in the grace,
 * later ones stay with Telegram for the next start), or ends (logged) when another consumer owns the updates.
 */
export const run = (
  api: BotApi.BotApi,
  ctx: ChannelContext,
  accept: (update: Update, raw: unknown) => Effect.Effect<void>,
  options: Options
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const stored = yield* ctx.state.getCursor(options.cursor)
    let offset = Option.match(stored, { onNone: () => undefined, onSome: (v) => Number(v) })
    // Stopping during the call loses nothing: Telegram forgets updates only when a later call sends an offset past
    // them. A batch once received is taken whole, with its offset stored, before the loop can stop.
    const once = Effect.gen(function*() {
      const items = yield* api.call(
        "getUpdates",
        {
          ...(offset === undefined ? {} : { offset }),
          timeout: options.timeoutSeconds,
          allowed_updates: allowedUpdates
        },
        Schema.Array(Schema.Unknown),
        { timeout: Duration.seconds(options.timeoutSeconds + 15) }
      )
      yield* Effect.uninterruptible(Effect.gen(function*() {
        for (const item of items) {
          const id = (item as { readonly update_id?: unknown } | null)?.update_id
          const update = decodeUpdate(item)
          if (update._tag === "Right") yield* accept(update.right, item)
          else yield* Effect.logWarning("malformed update skipped", update.left.message)
          if (typeof id === "number" && (offset === undefined || id + 1 > offset)) offset = id + 1
        }
        if (items.length > 0 && offset !== undefined) yield* ctx.state.setCursor(options.cursor, String(offset))
      }))
    })
    const backoff = ScheduleModule.intersect(
      options.backoff,
      ScheduleModule.identity<BotApiError>().pipe(ScheduleModule.addDelay((e) => BotApi.retryAfterMillis(e) ?? 0))
    )
    const loop = once.pipe(
      Effect.tapError((error) =>
        BotApi.isConflict(error) ? Effect.void : Effect.logWarning("getUpdates failed; backing off", error.message)
      ),
      Effect.retry({ schedule: backoff, while: (error) => !BotApi.isConflict(error) }),
      Effect.forever
    )
    const stopped = Effect.zipRight(ctx.draining, Effect.logInfo("shutting down: polling stopped"))
    return yield* Effect.raceFirst(loop, stopped)
  }).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(
        "another consumer is receiving this bot's updates (409 Conflict); this instance stays idle",
        error.message
      )
    )
  )

/** Removes any webhook (keeping pending updates: getUpdates fails while one is set), then polls in the scope. */
export const start = (
  api: BotApi.BotApi,
  ctx: ChannelContext,
  accept: (update: Update, raw: unknown) => Effect.Effect<void>,
  options: Options
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* api.call("deleteWebhook", { drop_pending_updates: false }, Schema.Unknown).pipe(
      Effect.catchAll((error) => Effect.logWarning("deleteWebhook failed", error.message))
    )
    yield* Effect.forkScoped(run(api, ctx, accept, options))
  })
