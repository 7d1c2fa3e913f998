/**
 * The Discord channel: slash commands over Discord's HTTP interactions endpoint (`POST /discord/interactions`,
 * no gateway connection). `/ask <prompt>` runs a turn in the session of the channel or DM it was used in
 * (`discord:<channel_id>`) as the user `discord:<user id>`; `/reset` starts a new conversation there. Replies
 * come back by editing the deferred response (with the text so far while it streams) and following up (2,000
 * characters a message), and replies from other channels are pushed to a channel or a DM with the bot token.
 *
 * The parts: `Verify` (signatures), `Interactions` (the endpoint), `Api` (REST and rate limits), `Commands`
 * (registration), `Replies` (the interaction webhook, with the channel as fallback), `Push`.
 */
import type { HttpClient } from "@effect/platform"
import type { ConfigError } from "effect"
import { Config, Duration, Effect, Either, FiberSet, Option, Redacted, Schema } from "effect"
import type { Channel, ChannelCommand, ChannelContext, ChannelHooks } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import { ChannelStartupError } from "../../domain/Errors.js"
import { ChannelName } from "../../domain/Ids.js"
import * as Api from "./Api.js"
import * as Commands from "./Commands.js"
import * as Interactions from "./Interactions.js"
import * as Push from "./Push.js"
import * as Replies from "./Replies.js"
import * as Verify from "./Verify.js"

export { isolationKeyOf } from "./Interactions.js"

export interface Options {
  /** The application id (Developer Portal, "General Information"). */
  readonly applicationId: string
  /** The application's public key, 64 hex characters; it verifies every interaction. */
  readonly publicKey: string
  /** The bot token: command registration, pushes, and replies after the interaction token expired. */
  readonly botToken?: Redacted.Redacted<string> | string | undefined
  /** Channel name, route prefix and session key prefix (default "discord"). */
  readonly name?: string
  /** Default https://discord.com/api/v10. */
  readonly apiBase?: string
  /** Route prefix (default "/discord"). */
  readonly path?: string
  /** Commands besides /ask, /reset and /help (registered with an optional `text` argument). */
  readonly commands?: ReadonlyArray<ChannelCommand>
  /** Register the commands at startup when they differ from Discord's (default true; needs the bot token). */
  readonly registerCommands?: boolean
  /** Most interactions answered in the background at once (default 100); more are told to try again. */
  readonly maxInFlight?: number
  readonly helpText?: string
  /**
   * While a reply streams, edit the deferred message with the text so far at most this often (default 1 s;
   * Discord allows about 5 webhook edits per 2 s). `false`: no streaming, one edit with the whole reply.
   */
  readonly streamEditInterval?: Duration.DurationInput | false
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

const defaultHelp = "Use /ask with a prompt to talk to the agent; each channel (and each DM) is one conversation. " +
  "/reset starts a new one."

/** The channel. It calls Discord through the `HttpClient` its composition provides (`http/UndiciClient.layer`). */
export const make = (options: Options): Channel<never, HttpClient.HttpClient> => {
  const name = options.name ?? "discord"
  const botToken = typeof options.botToken === "string" ?
    (options.botToken.trim().length === 0 ? undefined : Redacted.make(options.botToken)) :
    options.botToken
  const key = Verify.publicKey(options.publicKey)
  const applicationId = options.applicationId.trim()

  return ChannelModule.make<never, HttpClient.HttpClient>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const channelName = yield* Schema.decode(ChannelName)(name).pipe(Effect.orDie)
      const api = yield* Api.make({
        botToken,
        ...(options.apiBase === undefined ? {} : { apiBase: options.apiBase })
      })
      const replies = Replies.make(api)
      const fibers = yield* FiberSet.make<void, never>()
      const commands = options.commands ?? []
      const definitions = Commands.definitions(commands)
      const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.annotateLogs(effect, { channel: name })
      const startupError = (message: string, retryable = false) =>
        new ChannelStartupError({ channel: name, message, retryable })

      const startup = Effect.gen(function*() {
        if (Either.isLeft(key)) return yield* startupError(key.left)
        if (!/^\d{1,20}$/.test(applicationId)) {
          return yield* startupError("the Discord application id must be a numeric id (DISCORD_APPLICATION_ID)")
        }
        const invalid = Commands.problem(definitions)
        if (invalid !== undefined) return yield* startupError(invalid)
        if (options.registerCommands === false) return
        if (!api.hasBotToken) {
          return yield* Effect.logWarning(
            "slash commands not registered: DISCORD_BOT_TOKEN is not set (register them another way)"
          )
        }
        const wrote = yield* Commands.register(api, applicationId, definitions).pipe(
          Effect.mapError((error) =>
            startupError(
              `registering the slash commands failed (check DISCORD_BOT_TOKEN and DISCORD_APPLICATION_ID): ${error.message}`,
              Api.isRetryable(error)
            )
          )
        )
        yield* Effect.logInfo(wrote ? "slash commands registered" : "slash commands already up to date")
      }).pipe(annotate)

      const route = Interactions.route({
        ctx,
        name: channelName,
        applicationId,
        key: Either.getOrUndefined(key),
        replies,
        commands,
        fibers,
        maxInFlight: options.maxInFlight ?? 100,
        helpText: options.helpText ?? defaultHelp,
        streamEditInterval: options.streamEditInterval === false ?
          undefined :
          Duration.decode(options.streamEditInterval ?? "1 second")
      })
      const push = api.hasBotToken ? Push.make(api, ctx.state) : undefined
      return {
        path: options.path ?? `/${name}`,
        routes: [route],
        commands,
        startup,
        ...(push === undefined ?
          {} :
          { push: { push: (identity, result, pushOptions) => annotate(push.push(identity, result, pushOptions)) } }),
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: "Discord interactions"
      }
    }))
}

/**
 * The channel as configured by the environment, or none unless DISCORD_APPLICATION_ID and DISCORD_PUBLIC_KEY
 * are set: DISCORD_BOT_TOKEN, DISCORD_API_BASE, DISCORD_STREAM (default true; false: no streaming edits).
 */
export const fromConfig: Effect.Effect<
  Option.Option<Channel<never, HttpClient.HttpClient>>,
  ConfigError.ConfigError
> = Effect.gen(function*() {
  const applicationId = yield* Config.option(Config.string("DISCORD_APPLICATION_ID"))
  const publicKey = yield* Config.option(Config.string("DISCORD_PUBLIC_KEY"))
  if (Option.isNone(applicationId) || applicationId.value.trim().length === 0) return Option.none()
  if (Option.isNone(publicKey) || publicKey.value.trim().length === 0) return Option.none()
  const botToken = yield* Config.option(Config.redacted("DISCORD_BOT_TOKEN"))
  const apiBase = yield* Config.option(Config.string("DISCORD_API_BASE"))
  const stream = yield* Config.boolean("DISCORD_STREAM").pipe(Config.withDefault(true))
  return Option.some(make({
    ...(stream ? {} : { streamEditInterval: false }),
    applicationId: applicationId.value,
    publicKey: publicKey.value,
    ...(Option.isSome(botToken) && Redacted.value(botToken.value).trim().length > 0 ?
      { botToken: botToken.value } :
      {}),
    ...(Option.isSome(apiBase) && apiBase.value.length > 0 ? { apiBase: apiBase.value } : {})
  }))
})
