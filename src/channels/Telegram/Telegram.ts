/**
 * The Telegram channel: a bot answering private chats, groups (when mentioned or replied to) and forum topics,
 * over a webhook (`POST /telegram/webhook`) or long polling. Each chat (or topic) is one session,
 * `telegram:<chat_id>[:<thread_id>]`; updates of one chat are handled strictly in order, chats in parallel.
 *
 * Unlike the Python reference it replaces, long replies are split rather than truncated, Bot API failures are
 * retried (429 honours retry_after) or classified for the push runner, and media reaches the model as bytes,
 * never as a file URL carrying the bot token.
 *
 * This module composes the parts: `Inbound` (update to turn or command), `Replies` (sending and streaming),
 * `Webhook` and `Polling` (transports), `Push` (replies from other channels), `ChatQueue` (per-chat order, and
 * why the session actor's order is not enough).
 */
import type { HttpClient } from "@effect/platform"
import type { ConfigError } from "effect"
import { Config, Duration, Effect, Either, Option, Redacted, Ref, Schedule, Schema } from "effect"
import type { Channel, ChannelCommand, ChannelContext, ChannelHooks, Route } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import { ChannelStartupError, MailboxFull } from "../../domain/Errors.js"
import { ChannelName } from "../../domain/Ids.js"
import * as ChatQueue from "../shared/ChatQueue.js"
import * as BotApi from "./BotApi.js"
import * as Commands from "./Commands.js"
import type { BotInfo } from "./Inbound.js"
import * as Inbound from "./Inbound.js"
import * as Linking from "./Linking.js"
import * as Polling from "./Polling.js"
import * as Push from "./Push.js"
import type { ParseMode } from "./Replies.js"
import * as Replies from "./Replies.js"
import type { Update } from "./Updates.js"
import { User } from "./Updates.js"
import * as Webhook from "./Webhook.js"

export { parseCommand } from "./Commands.js"
export type { ParsedCommand } from "./Commands.js"
export { isolationKey } from "./Inbound.js"
export type { ParseMode } from "./Replies.js"

export interface Options {
  readonly token: Redacted.Redacted<string> | string
  /** Channel name, route prefix and session key prefix (default "telegram"). */
  readonly name?: string
  /** Default https://api.telegram.org. */
  readonly apiBase?: string
  /** `auto` (default): webhook when `webhookUrl` is set, else polling. */
  readonly transport?: "auto" | "polling" | "webhook"
  /** The public URL Telegram posts updates to (it must reach `POST <path>/webhook`). */
  readonly webhookUrl?: string
  /** Required in webhook mode: Telegram echoes it in `X-Telegram-Bot-Api-Secret-Token`. */
  readonly secretToken?: Redacted.Redacted<string> | string
  /** Off by default: a rolling redeploy would otherwise unregister the new instance's webhook. */
  readonly deleteWebhookOnShutdown?: boolean
  /** Route prefix (default "/telegram"). */
  readonly path?: string
  /** parse_mode of final replies; streaming edits are always plain text. */
  readonly parseMode?: ParseMode
  /** Stream replies by editing one message (default true). */
  readonly stream?: boolean
  /** Least time between two streaming edits (default 400 ms). */
  readonly streamEditInterval?: Duration.DurationInput
  /** How often the typing indicator is renewed while the agent works (default 4 s; Telegram shows it 5 s). */
  readonly typingInterval?: Duration.DurationInput
  /**
   * How long a turn runs before the typing indicator is first sent (default 500 ms; zero sends it as the turn
   * starts). A turn answered sooner sends none.
   */
  readonly typingDelay?: Duration.DurationInput
  readonly sendTypingAction?: boolean
  /** Long-poll timeout in seconds (default 30). */
  readonly pollingTimeoutSeconds?: number
  /** Delays between failed getUpdates calls (default exponential from 1 s, at most 30 s). */
  readonly pollingBackoff?: Schedule.Schedule<unknown, unknown>
  /** Commands besides /start, /new and /help; they may override those. */
  readonly commands?: ReadonlyArray<ChannelCommand>
  /** Register the commands with setMyCommands at startup (default true). */
  readonly registerCommands?: boolean
  /** Largest media file passed to the agent, in bytes (default 10 MiB; Telegram serves at most 20 MB). */
  readonly maxMediaBytes?: number
  readonly startText?: string
  readonly helpText?: string
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

/**
 * The channel. It calls the Bot API through the `HttpClient` its composition provides (`http/UndiciClient.layer`
 * in `Server.ts`).
 */
export const make = (options: Options): Channel<never, HttpClient.HttpClient> => {
  const name = options.name ?? "telegram"
  const token = typeof options.token === "string" ? Redacted.make(options.token) : options.token
  const secret = options.secretToken === undefined ?
    undefined :
    Redacted.value(typeof options.secretToken === "string" ? Redacted.make(options.secretToken) : options.secretToken)
  const mode: "polling" | "webhook" = options.transport === "webhook" ||
      (options.transport !== "polling" && options.webhookUrl !== undefined) ?
    "webhook" :
    "polling"
  const pollingBackoff = options.pollingBackoff ??
    Schedule.exponential("1 second", 2).pipe(Schedule.union(Schedule.spaced("30 seconds")))

  return ChannelModule.make<never, HttpClient.HttpClient>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const channelName = yield* Schema.decode(ChannelName)(name).pipe(Effect.orDie)
      const api = yield* BotApi.make({ token, ...(options.apiBase === undefined ? {} : { apiBase: options.apiBase }) })
      const bot = yield* Ref.make<BotInfo>({ id: Number(api.botId), username: "" })
      const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.annotateLogs(effect, { channel: name })

      const linking = Linking.make(api, ctx.linking)
      const replies = Replies.make(api, ctx, {
        linkChallenge: linking.challenge,
        parseMode: options.parseMode,
        editInterval: Duration.decode(options.streamEditInterval ?? "400 millis"),
        typingInterval: Duration.decode(options.typingInterval ?? "4 seconds"),
        typingDelay: Duration.decode(options.typingDelay ?? "500 millis"),
        sendTypingAction: options.sendTypingAction !== false
      })
      // /link, /unlink, /whoami when the host links identities; the channel's own commands may override them.
      const own = options.commands ?? []
      const commands = Commands.make(ctx, {
        ...options,
        commands: [...own, ...linking.commands.filter((l) => !own.some((c) => c.name === l.name))]
      })
      const inbound = Inbound.make({ api, ctx, replies, commands, bot }, {
        name: channelName,
        streaming: options.stream ?? true,
        maxMediaBytes: options.maxMediaBytes ?? 10 * 1024 * 1024
      })
      const chats = yield* ChatQueue.make()
      const seenNamespace = `telegram:${api.botId}`

      /**
       * Queues an update behind its chat's earlier updates, or says which bound refused it (then nothing about it
       * was kept, not even its id: the transport has Telegram deliver it again). Duplicates are dropped in the
       * chat's turn, so the acknowledgement does not wait for the seen-id commit, and two copies of one update,
       * queued on the same chat, are still handled once.
       */
      const accept = (update: Update, raw: unknown): Effect.Effect<ChatQueue.Offered> =>
        Effect.suspend(() => {
          const chat = inbound.chatOf(update)
          if (Either.isLeft(chat)) {
            return Effect.as(
              Effect.logWarning("update skipped: its chat has no valid session key", chat.left).pipe(annotate),
              "queued" as const
            )
          }
          const work = Effect.gen(function*() {
            // Seen-id window: Telegram keeps an update 24 h.
            const fresh = yield* ctx.state.markSeen(seenNamespace, String(update.update_id), Duration.hours(24))
            if (!fresh) return yield* Effect.logDebug("duplicate update dropped", update.update_id)
            yield* inbound.handleUpdate(update, raw, chat.right)
          }).pipe(
            annotate,
            Effect.catchAllCause((cause) => Effect.logError("update handling failed", cause))
          )
          return chats.offer(chat.right?.key, work)
        })

      /** What a refused update is answered (webhook: 429 with retry-after; polling: the batch stops there). */
      const refusal = (update: Update, offered: Exclude<ChatQueue.Offered, "queued">) => {
        const chat = inbound.chatOf(update)
        const key = Either.isRight(chat) && chat.right !== undefined ? chat.right.key : name
        return new MailboxFull({
          key,
          limit: offered === "chat_full" ? ChatQueue.defaultMaxWaiting : ChatQueue.defaultMaxPending,
          retryAfter: Duration.seconds(1),
          message: offered === "chat_full" ?
            `chat ${key} already has ${ChatQueue.defaultMaxWaiting} update(s) waiting; deliver this one again later` :
            `the ${name} channel already has ${ChatQueue.defaultMaxPending} update(s) queued or running; ` +
            `deliver this one again later`
        })
      }

      // Missing configuration and answers like 401 (bad token) can never succeed: the host stops retrying those.
      const startupError = (message: string, retryable = false) =>
        new ChannelStartupError({ channel: name, message, retryable })

      const startup = Effect.gen(function*() {
        if (mode === "webhook") {
          const problem = Webhook.configProblem(options.webhookUrl, secret)
          if (problem !== undefined) return yield* startupError(problem)
        }
        const me = yield* api.call("getMe", {}, User).pipe(
          Effect.mapError((error) =>
            startupError(`getMe failed (check TELEGRAM_BOT_TOKEN): ${error.message}`, BotApi.isRetryable(error))
          )
        )
        yield* Ref.set(bot, { id: me.id, username: me.username ?? "" })
        if (options.registerCommands !== false) {
          yield* api.call(
            "setMyCommands",
            { commands: commands.map((c) => ({ command: c.name, description: c.description })) },
            Schema.Unknown
          ).pipe(Effect.catchAll((error) => Effect.logWarning("setMyCommands failed", error.message)))
        }
        if (mode === "webhook") {
          yield* Webhook.register(api, {
            url: options.webhookUrl!,
            secret: secret!,
            deleteOnShutdown: options.deleteWebhookOnShutdown === true
          }).pipe(
            Effect.mapError((error) => startupError(`setWebhook failed: ${error.message}`, BotApi.isRetryable(error)))
          )
        } else {
          yield* Polling.start(api, ctx, accept, {
            cursor: `telegram:${api.botId}:offset`,
            timeoutSeconds: options.pollingTimeoutSeconds ?? 30,
            backoff: pollingBackoff,
            awaitRoom: (update) => {
              const chat = inbound.chatOf(update)
              return chats.awaitRoom(Either.isRight(chat) ? chat.right?.key : undefined)
            }
          })
        }
        const username = (yield* bot).username
        yield* Effect.logInfo(`telegram bot @${username} ready (${mode})`)
      }).pipe(annotate)

      const push = Push.make(replies)
      const routes: Array<Route> = mode === "webhook" ? [Webhook.route(ctx, secret, accept, refusal)] : []
      return {
        path: options.path ?? `/${name}`,
        routes,
        commands,
        startup,
        push: { push: (identity, result, pushOptions) => annotate(push.push(identity, result, pushOptions)) },
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: mode === "webhook" ? "Telegram webhook" : "Telegram long polling"
      }
    }))
}

/**
 * The channel as configured by the environment, or none when TELEGRAM_BOT_TOKEN is unset:
 * TELEGRAM_API_BASE, TELEGRAM_WEBHOOK_URL, TELEGRAM_SECRET_TOKEN, TELEGRAM_DELETE_WEBHOOK_ON_SHUTDOWN,
 * TELEGRAM_PARSE_MODE, TELEGRAM_STREAM.
 */
export const fromConfig: Effect.Effect<
  Option.Option<Channel<never, HttpClient.HttpClient>>,
  ConfigError.ConfigError
> = Effect.gen(function*() {
  const token = yield* Config.option(Config.redacted("TELEGRAM_BOT_TOKEN"))
  if (Option.isNone(token) || Redacted.value(token.value).trim().length === 0) return Option.none()
  const apiBase = yield* Config.string("TELEGRAM_API_BASE").pipe(Config.withDefault("https://api.telegram.org"))
  const webhookUrl = yield* Config.option(Config.string("TELEGRAM_WEBHOOK_URL"))
  const secretToken = yield* Config.option(Config.redacted("TELEGRAM_SECRET_TOKEN"))
  const deleteWebhookOnShutdown = yield* Config.boolean("TELEGRAM_DELETE_WEBHOOK_ON_SHUTDOWN").pipe(
    Config.withDefault(false)
  )
  const parseMode = yield* Config.option(Config.literal("MarkdownV2", "HTML", "Markdown")("TELEGRAM_PARSE_MODE"))
  const stream = yield* Config.boolean("TELEGRAM_STREAM").pipe(Config.withDefault(true))
  return Option.some(make({
    token: token.value,
    apiBase,
    deleteWebhookOnShutdown,
    stream,
    ...(Option.isSome(webhookUrl) && webhookUrl.value.length > 0 ? { webhookUrl: webhookUrl.value } : {}),
    ...(Option.isSome(secretToken) ? { secretToken: secretToken.value } : {}),
    ...(Option.isSome(parseMode) ? { parseMode: parseMode.value } : {})
  }))
})
