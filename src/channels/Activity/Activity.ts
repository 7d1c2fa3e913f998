/**
 * The Bot Framework Activity protocol channel: what Azure Bot Service calls for Teams, Web Chat and the other
 * channels it connects. Activities arrive at `POST /api/messages` with a JWT the channel verifies (`Auth`); each
 * conversation is one session, `activity:<conversation.id>`, handled in arrival order (the per-conversation lanes
 * of `ChatQueue`); replies go out through the Bot Connector (`Connector`, with the bot's client-credentials token
 * from `Token`), streamed in Teams 1:1 chats (`Streaming`). Users' conversation references are kept so other
 * channels can push to them (`Push`).
 */
import type { HttpClient } from "@effect/platform"
import type { ConfigError } from "effect"
import { Config, Duration, Effect, Option, Redacted, Schema } from "effect"
import type { Channel, ChannelContext, ChannelHooks } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import { ChannelStartupError } from "../../domain/Errors.js"
import { ChannelName } from "../../domain/Ids.js"
import type { Bytes } from "../../domain/Size.js"
import * as Size from "../../domain/Size.js"
import * as ChatQueue from "../shared/ChatQueue.js"
import * as AttachmentsModule from "./Attachments.js"
import * as Auth from "./Auth.js"
import * as Connector from "./Connector.js"
import * as FeedbackModule from "./Feedback.js"
import * as Inbound from "./Inbound.js"
import * as LinkingModule from "./Linking.js"
import * as Messages from "./Messages.js"
import * as Push from "./Push.js"
import * as Replies from "./Replies.js"
import type { Activity as ActivityType } from "./Schema.js"
import * as Token from "./Token.js"

export { isolationKey, referenceKey, stripMentions } from "./Inbound.js"

export interface Options {
  /** MICROSOFT_APP_ID: the audience of inbound tokens and the client id of outbound ones. */
  readonly appId: string
  /** MICROSOFT_APP_PASSWORD: the client secret. */
  readonly password: Redacted.Redacted<string> | string
  /** MICROSOFT_APP_TENANT_ID: the tenant of a single-tenant bot. */
  readonly tenantId?: string
  /** MICROSOFT_APP_TYPE (default SingleTenant when a tenant is given, else MultiTenant). */
  readonly appType?: "MultiTenant" | "SingleTenant"
  /** Channel name and session key prefix (default "activity"). */
  readonly name?: string
  /** OpenID metadata of the Bot Framework's token issuer (default the public cloud's). */
  readonly openIdMetadataUrl?: string
  /** Entra login base for tokens and tenant keys (default https://login.microsoftonline.com). */
  readonly loginUrl?: string
  /** Service URLs the channel sends to (see `Auth.serviceUrlAllowed`; default the public cloud's). */
  readonly serviceUrls?: ReadonlyArray<string>
  /** Stream replies in Teams 1:1 chats (default true). */
  readonly stream?: boolean
  /** Least time between two streamed chunks (default 1.5 s). */
  readonly streamInterval?: Duration.DurationInput
  /** The informative text that opens a stream (default "Thinking…"; empty for none). */
  readonly streamInformative?: string
  /** How often the typing indicator is renewed while the agent works (default 3 s). */
  readonly typingInterval?: Duration.DurationInput
  /**
   * How long a turn runs before the typing indicator is first sent (default 500 ms; zero: as the turn starts). A
   * reply within it is one connector call, not two.
   */
  readonly typingDelay?: Duration.DurationInput
  /** Sent when someone is added to a conversation with the bot (empty: nothing). */
  readonly welcomeText?: string
  /** Hosts attachments are downloaded from (default the service URLs and `*.sharepoint.com`); same forms. */
  readonly attachmentHosts?: ReadonlyArray<string>
  /** Largest attachment downloaded (default 10 MiB). */
  readonly maxAttachmentBytes?: Bytes
  /** Most attachments taken from one message (default 5). */
  readonly maxAttachments?: number
  /** Feedback buttons on replies (default true); ratings are stored under the rated response. */
  readonly feedback?: boolean
  /** Called with each stored rating (after it is stored; a failure is logged). */
  readonly onFeedback?: (feedback: FeedbackModule.Feedback) => Effect.Effect<void>
  readonly hooks?: ChannelHooks
  readonly busyPolicy?: "queue" | "reject" | "interrupt"
}

/** The channel; it calls the connector through the composition's `HttpClient`. */
export const make = (options: Options): Channel<never, HttpClient.HttpClient> => {
  const name = options.name ?? "activity"
  const password = typeof options.password === "string" ? Redacted.make(options.password) : options.password
  const appType = options.appType ?? (options.tenantId === undefined ? "MultiTenant" : "SingleTenant")
  const tokenTenant = appType === "SingleTenant" && options.tenantId !== undefined ?
    options.tenantId :
    "botframework.com"

  return ChannelModule.make<never, HttpClient.HttpClient>(name, (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const channelName = yield* Schema.decode(ChannelName)(name).pipe(Effect.orDie)
      const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.annotateLogs(effect, { channel: name })
      const serviceUrls = options.serviceUrls ?? Auth.defaultServiceUrls
      const serviceUrlAllowed = Auth.serviceUrlAllowed(serviceUrls)
      const auth = yield* Auth.make({
        appId: options.appId,
        tenantId: appType === "SingleTenant" ? options.tenantId : undefined,
        ...(options.openIdMetadataUrl === undefined ? {} : { openIdMetadataUrl: options.openIdMetadataUrl }),
        ...(options.loginUrl === undefined ? {} : { authority: options.loginUrl })
      })
      const tokens = yield* Token.make({
        appId: options.appId,
        password,
        tenant: tokenTenant,
        ...(options.loginUrl === undefined ? {} : { loginUrl: options.loginUrl })
      })
      const connector = yield* Connector.make(tokens)
      const feedback = yield* FeedbackModule.make(ctx, { name, onFeedback: options.onFeedback })
      const replies = Replies.make(connector, ctx, {
        feedbackStore: feedback,
        typingInterval: Duration.decode(options.typingInterval ?? "3 seconds"),
        typingDelay: Duration.decode(options.typingDelay ?? "500 millis"),
        stream: options.stream ?? true,
        feedback: options.feedback ?? true,
        streaming: {
          interval: Duration.decode(options.streamInterval ?? "1.5 seconds"),
          maxDuration: Duration.seconds(110),
          informative: options.streamInformative ?? "Thinking…"
        }
      })
      const attachments = yield* AttachmentsModule.make({
        allowed: Auth.serviceUrlAllowed(
          options.attachmentHosts ?? [...serviceUrls, ...AttachmentsModule.defaultFileHosts]
        ),
        maxBytes: options.maxAttachmentBytes ?? Size.mebibytes(10),
        maxCount: options.maxAttachments ?? 5,
        tokens
      })
      const linking = LinkingModule.make({ ctx, connector, name: channelName, linking: ctx.linking, say: replies.say })
      const inbound = Inbound.make(ctx, replies, {
        attachments,
        name: channelName,
        welcomeText: options.welcomeText ?? "Hi! Send me a message to get started.",
        feedback,
        linking
      })
      const lanes = yield* ChatQueue.make()
      const seenNamespace = `${name}:${options.appId}`

      const accept = (activity: ActivityType, raw: unknown, key: string) =>
        Effect.gen(function*() {
          if (activity.type !== "message" && activity.type !== "conversationUpdate") return
          if (activity.id !== undefined) {
            // Seen-id window: Bot Framework retries within minutes; a day is ample.
            const fresh = yield* ctx.state.markSeen(
              seenNamespace,
              `${activity.conversation.id}:${activity.id}`,
              Duration.hours(24)
            )
            if (!fresh) return yield* Effect.logDebug("duplicate activity dropped", activity.id)
          }
          const work = annotate(inbound.handle(activity, raw, key as never)).pipe(
            Effect.catchAllCause((cause) => Effect.logError("activity handling failed", cause))
          )
          yield* lanes.run(
            key,
            work,
            replies.say(
              Inbound.targetOf(activity),
              "I'm busy with your earlier messages. Please try again in a moment."
            )
          )
        })

      const invoke = (activity: ActivityType, raw: unknown, key: string) =>
        Effect.gen(function*() {
          const value = activity.value as Record<string, unknown> | undefined
          if (activity.name === "message/submitAction") {
            const rating = FeedbackModule.fromInvoke(value, activity.replyToId ?? undefined)
            if (rating._tag === "Some") {
              yield* feedback.record(rating.value, {
                conversationId: activity.conversation.id,
                userId: Inbound.userIdOf(activity)
              }).pipe(annotate)
            }
            return { status: 200, body: {} }
          }
          if (activity.name === "adaptiveCard/action") {
            const action = value?.action as { data?: unknown } | undefined
            yield* accept({ ...activity, type: "message", text: undefined, value: action?.data ?? {} }, raw, key)
            return {
              status: 200,
              body: { statusCode: 200, type: "application/vnd.microsoft.activity.message", value: "Working on it…" }
            }
          }
          return { status: 200, body: {} }
        })

      const startupError = (message: string, retryable = false) =>
        new ChannelStartupError({ channel: name, message, retryable })

      const startup = Effect.gen(function*() {
        if (options.appId.trim().length === 0) return yield* startupError("MICROSOFT_APP_ID is empty")
        if (Redacted.value(password).length === 0) {
          return yield* startupError("MICROSOFT_APP_PASSWORD is needed to send replies")
        }
        yield* auth.load.pipe(Effect.mapError((error) => startupError(error.message, true)))
        yield* tokens.get.pipe(
          Effect.mapError((error) => startupError(error.message, error.status === 0 || error.status >= 500))
        )
        yield* Effect.logInfo(`bot ${options.appId} ready (${appType})`)
      }).pipe(annotate)

      const route = Messages.route({
        ctx,
        auth,
        serviceUrlAllowed,
        prefix: channelName,
        handlers: { accept, invoke }
      })
      const push = Push.make({ ctx, connector, replies, name: channelName, serviceUrlAllowed })
      return {
        path: "",
        routes: [route, ...FeedbackModule.route(ctx, feedback)],
        startup,
        push: { push: (identity, result, pushOptions) => annotate(push.push(identity, result, pushOptions)) },
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.busyPolicy === undefined ? {} : { busyPolicy: options.busyPolicy }),
        describe: "Bot Framework activities at POST /api/messages"
      }
    }))
}

const list = (name: string) =>
  Config.string(name).pipe(
    Config.map((raw) => raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)),
    Config.option
  )

/**
 * The channel as configured by the environment, or none when MICROSOFT_APP_ID is unset: MICROSOFT_APP_PASSWORD,
 * MICROSOFT_APP_TENANT_ID, MICROSOFT_APP_TYPE (as the official SDKs read them), and ACTIVITY_OPENID_METADATA_URL,
 * ACTIVITY_LOGIN_URL, ACTIVITY_SERVICE_URLS, ACTIVITY_STREAM, ACTIVITY_WELCOME_TEXT, ACTIVITY_ATTACHMENT_HOSTS,
 * ACTIVITY_MAX_ATTACHMENT_BYTES.
 */
export const fromConfig: Effect.Effect<
  Option.Option<Channel<never, HttpClient.HttpClient>>,
  ConfigError.ConfigError
> = Effect.gen(function*() {
  const appId = yield* Config.option(Config.string("MICROSOFT_APP_ID"))
  if (Option.isNone(appId) || appId.value.trim().length === 0) return Option.none()
  const password = yield* Config.redacted("MICROSOFT_APP_PASSWORD").pipe(Config.withDefault(Redacted.make("")))
  const tenantId = yield* Config.option(Config.string("MICROSOFT_APP_TENANT_ID"))
  const appType = yield* Config.option(Config.literal("MultiTenant", "SingleTenant")("MICROSOFT_APP_TYPE"))
  const metadata = yield* Config.option(Config.string("ACTIVITY_OPENID_METADATA_URL"))
  const loginUrl = yield* Config.option(Config.string("ACTIVITY_LOGIN_URL"))
  const serviceUrls = yield* list("ACTIVITY_SERVICE_URLS")
  const stream = yield* Config.boolean("ACTIVITY_STREAM").pipe(Config.withDefault(true))
  const welcomeText = yield* Config.option(Config.string("ACTIVITY_WELCOME_TEXT"))
  const attachmentHosts = yield* list("ACTIVITY_ATTACHMENT_HOSTS")
  const maxAttachmentBytes = yield* Config.option(Size.config("ACTIVITY_MAX_ATTACHMENT_BYTES"))
  const some = <A>(option: Option.Option<A>, key: string) =>
    Option.isSome(option) && option.value !== "" ? { [key]: option.value } : {}
  return Option.some(make({
    appId: appId.value.trim(),
    password,
    stream,
    ...some(tenantId, "tenantId"),
    ...some(appType, "appType"),
    ...some(metadata, "openIdMetadataUrl"),
    ...some(loginUrl, "loginUrl"),
    ...some(serviceUrls, "serviceUrls"),
    ...some(welcomeText, "welcomeText"),
    ...some(attachmentHosts, "attachmentHosts"),
    ...(Option.isSome(maxAttachmentBytes) ? { maxAttachmentBytes: maxAttachmentBytes.value } : {})
  }))
})
