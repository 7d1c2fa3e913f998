/**
 * Long-polling transport: a scoped `getUpdates` loop that hands each update to the channel and stores the next
 * offset (cursor `telegram:<bot_id>:offset`) after each batch, so a restarted host continues where it left off.
 * Failures back off (429 waits at least `retry_after`); a 409 Conflict (another consumer) leaves it idle. When the
 * channel's queue refuses an update (full), the batch stops there, the offset stays on that update and the next
 * call, once the queue has room for it, gets it again: the queue's bound holds the poller back instead of
 * dropping updates, and the order of a chat's updates is kept.
 */
import type { Schedule, Scope } from "effect"
import { Duration, Effect, Option, Schedule as ScheduleModule, Schema } from "effect"
import type { ChannelContext } from "../../core/Channel.js"
import type { Offered } from "../shared/ChatQueue.js"
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
  /** Waits until the queue would take `update` (after `accept` refused it). */
  readonly awaitRoom: (update: Update) => Effect.Effect<void>
}

/**
 * The poll loop; it runs until shutdown starts (`ctx.draining`: updates taken by then are handled in the grace,
 * later ones stay with Telegram for the next start), or ends (logged) when another consumer owns the updates.
 */
export const run = (
  api: BotApi.BotApi,
  ctx: ChannelContext,
  accept: (update: Update, raw: unknown) => Effect.Effect<Offered>,
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
      const refused = yield* Effect.uninterruptible(Effect.gen(function*() {
        let refused: { readonly update: Update; readonly offered: Offered } | undefined
        for (const item of items) {
          const id = (item as { readonly update_id?: unknown } | null)?.update_id
          const update = decodeUpdate(item)
          if (update._tag === "Right") {
            const offered = yield* accept(update.right, item)
            // Not taken: the offset stays on it, so the next call returns it (and what follows) again.
            if (offered !== "queued") {
              refused = { update: update.right, offered }
              break
            }
          } else {
            yield* Effect.logWarning("malformed update skipped", update.left.message)
          }
          if (typeof id === "number" && (offset === undefined || id + 1 > offset)) offset = id + 1
        }
        if (items.length > 0 && offset !== undefined) yield* ctx.state.setCursor(options.cursor, String(offset))
        return refused
      }))
      if (refused !== undefined) {
        yield* Effect.logInfo(
          refused.offered === "chat_full" ?
            "a chat has as many updates waiting as it may: polling waits for it" :
            "the channel has as many updates queued as it may: polling waits"
        )
        yield* options.awaitRoom(refused.update)
      }
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
  accept: (update: Update, raw: unknown) => Effect.Effect<Offered>,
  options: Options
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* api.call("deleteWebhook", { drop_pending_updates: false }, Schema.Unknown).pipe(
      Effect.catchAll((error) => Effect.logWarning("deleteWebhook failed", error.message))
    )
    yield* Effect.forkScoped(run(api, ctx, accept, options))
  })
