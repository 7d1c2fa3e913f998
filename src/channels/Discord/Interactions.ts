/**
 * `POST <path>/interactions`: the endpoint Discord posts interactions to. The raw body's signature is checked
 * first (401 otherwise, before anything is parsed); then PING is answered `{"type":1}`, a slash command gets a
 * deferred response (type 5) at once while its turn runs in the background, autocomplete gets no suggestions,
 * and buttons, menus and modals a short ephemeral note. Anything else is a 4xx with a JSON error.
 */
import type { FiberSet } from "effect"
import { Clock, Duration, Effect, Either, Fiber, FiberSet as FiberSetModule, Queue, Schema, Stream } from "effect"
import type * as Crypto from "node:crypto"
import type { ChannelCommand, ChannelContext, Route, TurnOutcome } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { TurnError } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import type { ChannelName, IsolationKey } from "../../domain/Ids.js"
import { isolationKey } from "../../domain/Ids.js"
import { describeBodyError, errorJson, json, parseJsonBytes, readBytes } from "../../http/HttpBody.js"
import { replyText, turnErrorText } from "./Render.js"
import type { Conversation, Replies } from "./Replies.js"
import * as Verify from "./Verify.js"

/** Interaction types (what Discord sends). */
export const InteractionType = {
  ping: 1,
  applicationCommand: 2,
  messageComponent: 3,
  autocomplete: 4,
  modalSubmit: 5
} as const

/** Interaction callback types (what the channel answers). */
export const CallbackType = {
  pong: 1,
  message: 4,
  deferredMessage: 5,
  autocompleteResult: 8
} as const

/** The EPHEMERAL message flag: only the invoking user sees the message. */
export const EPHEMERAL = 1 << 6

const User = Schema.Struct({
  id: Schema.String,
  username: Schema.optional(Schema.String),
  global_name: Schema.optional(Schema.NullOr(Schema.String))
})

const CommandOption = Schema.Struct({
  name: Schema.String,
  type: Schema.Number,
  value: Schema.optional(Schema.Unknown)
})

/** The fields of an interaction the channel reads; the rest is ignored. */
export const Interaction = Schema.Struct({
  id: Schema.String,
  application_id: Schema.String,
  type: Schema.Number,
  token: Schema.String,
  channel_id: Schema.optional(Schema.String),
  guild_id: Schema.optional(Schema.String),
  member: Schema.optional(Schema.Struct({ user: Schema.optional(User) })),
  user: Schema.optional(User),
  data: Schema.optional(Schema.Struct({
    name: Schema.optional(Schema.String),
    options: Schema.optional(Schema.Array(CommandOption))
  }))
})
export type Interaction = typeof Interaction.Type
const decodeInteraction = Schema.decodeUnknownEither(Interaction)

const message = (content: string, ephemeral = true) =>
  json({
    type: CallbackType.message,
    data: { content, allowed_mentions: { parse: [] }, ...(ephemeral ? { flags: EPHEMERAL } : {}) }
  })

const deferred = json({ type: CallbackType.deferredMessage })

export interface Deps {
  readonly ctx: ChannelContext
  readonly name: ChannelName
  readonly applicationId: string
  /** Undefined when the configured public key is unusable: every request is then refused. */
  readonly key: Crypto.KeyObject | undefined
  readonly replies: Replies
  readonly commands: ReadonlyArray<ChannelCommand>
  /** Background turns; bounded by `maxInFlight`. */
  readonly fibers: FiberSet.FiberSet<void, never>
  readonly maxInFlight: number
  readonly helpText: string
  /** While a reply streams, edit the deferred message with the text so far at most this often; none: no edits. */
  readonly streamEditInterval: Duration.Duration | undefined
}

/** The session key of a channel or DM. */
export const isolationKeyOf = (channelId: string, prefix = "discord"): string => `${prefix}:${channelId}`

export const route = (deps: Deps): Route => {
  const { commands, ctx, replies } = deps
  const seenNamespace = `discord:${deps.applicationId}:interactions`

  /** Runs `work` in the background with a conversation for the interaction; busy when too many are running. */
  const background = (
    interaction: Interaction & { readonly channel_id: string },
    work: (conversation: Conversation) => Effect.Effect<void>
  ) =>
    Effect.gen(function*() {
      if ((yield* FiberSetModule.size(deps.fibers)) >= deps.maxInFlight) {
        return message("I'm busy with other requests right now. Please try again in a minute.")
      }
      const conversation = yield* replies.conversation({
        applicationId: deps.applicationId,
        interactionId: interaction.id,
        token: interaction.token,
        channelId: interaction.channel_id,
        receivedAt: yield* Clock.currentTimeMillis
      })
      yield* FiberSetModule.run(
        deps.fibers,
        work(conversation).pipe(
          Effect.catchAllCause((cause) => Effect.logError("interaction handling failed", cause)),
          Effect.annotateLogs({ channel: deps.name, interaction: interaction.id })
        )
      )
      return deferred
    })

  /**
   * A streaming turn whose text so far edits the deferred message: the first edit one interval after the turn
   * starts (a quick reply gets only the final edit), then at most one per interval, one at a time.
   */
  const streamed = (
    request: ChannelRequest,
    raw: unknown,
    conversation: Conversation,
    interval: Duration.Duration
  ): Effect.Effect<TurnOutcome, TurnError> =>
    Effect.gen(function*() {
      const turn = yield* ctx.runStream({ ...request, stream: true }, raw)
      let text = ""
      const changed = yield* Queue.sliding<void>(1)
      // Interruptible explicitly: the background work may run uninterruptibly, and a fork inherits that.
      const editor = yield* Effect.fork(Effect.interruptible(
        Effect.forever(
          Effect.sleep(interval).pipe(
            Effect.zipRight(changed.take),
            Effect.zipRight(Effect.suspend(() => conversation.progress(text)))
          )
        )
      ))
      const read = yield* Effect.either(Stream.runForEach(turn.updates, (update) => {
        if (update.role !== undefined && update.role !== "assistant") return Effect.void
        let delta = ""
        for (const part of update.contents) if (part._tag === "text") delta += part.text
        if (delta.length === 0) return Effect.void
        text += delta
        return changed.offer(undefined)
      }))
      // Waits for an edit in flight (it is uninterruptible), so the final text always lands last.
      yield* Fiber.interrupt(editor)
      if (Either.isLeft(read)) return yield* read.left
      return yield* turn.result
    })

  const ask = (
    interaction: Interaction & { readonly channel_id: string },
    key: IsolationKey,
    identity: ChannelIdentity,
    prompt: string,
    raw: unknown
  ) => {
    const user = interaction.member?.user ?? interaction.user
    const request: ChannelRequest = {
      channel: deps.name,
      operation: "message.create",
      input: [{
        role: "user",
        contents: [{ _tag: "text", text: prompt }],
        ...(user?.global_name ?? user?.username ? { authorName: (user.global_name ?? user.username)! } : {})
      }],
      session: { isolationKey: key },
      identity,
      attributes: {
        interaction_id: interaction.id,
        channel_id: interaction.channel_id,
        ...(interaction.guild_id === undefined ? {} : { guild_id: interaction.guild_id }),
        user_id: identity.nativeId
      },
      stream: false
    }
    return background(interaction, (conversation) =>
      (deps.streamEditInterval === undefined ?
        ctx.run(request, raw) :
        streamed(request, raw, conversation, deps.streamEditInterval)).pipe(
          Effect.matchEffect({
            onFailure: (error) =>
              Effect.zipRight(
                Effect.logInfo("turn refused or failed", error._tag),
                conversation.send(turnErrorText(error))
              ),
            onSuccess: ({ originating }) =>
              originating._tag === "None" ?
                // The reply went elsewhere (a response target): close the deferred message.
                conversation.send("(the reply was delivered elsewhere)") :
                conversation.send(replyText(originating.value.response))
          })
        ))
  }

  const command = (interaction: Interaction, raw: unknown) =>
    Effect.gen(function*() {
      const user = interaction.member?.user ?? interaction.user
      const channelId = interaction.channel_id
      if (user === undefined || channelId === undefined) {
        return message("This command can only be used in a channel or a direct message.")
      }
      const key = isolationKey(isolationKeyOf(channelId, deps.name))
      if (Either.isLeft(key)) return message("Sorry, I can't handle commands in this channel.")
      const identity: ChannelIdentity = {
        channel: deps.name,
        nativeId: user.id,
        attributes: {
          channel_id: channelId,
          ...(interaction.guild_id === undefined ? {} : { guild_id: interaction.guild_id }),
          ...(user.username === undefined ? {} : { username: user.username })
        }
      }
      const located = { ...interaction, channel_id: channelId }
      const name = interaction.data?.name ?? ""
      const option = (optionName: string) => {
        const found = interaction.data?.options?.find((o) => o.name === optionName)
        return typeof found?.value === "string" ? found.value.trim() : ""
      }
      switch (name) {
        case "ask": {
          const prompt = option("prompt")
          if (prompt.length === 0) return message("Tell me what to ask: /ask prompt:<your question>")
          return yield* ask(located, key.right, identity, prompt, raw)
        }
        case "reset": {
          yield* ctx.resetSession(key.right)
          return message("Started a new conversation in this channel. Earlier messages are forgotten.", false)
        }
        case "help":
          return message(deps.helpText)
      }
      const custom = commands.find((c) => c.name === name)
      if (custom === undefined) return message(`Unknown command /${name}.`)
      const args = option("text")
      const request: ChannelRequest = {
        channel: deps.name,
        operation: "command.invoke",
        input: [{ role: "user", contents: [{ _tag: "text", text: `/${name} ${args}`.trim() }] }],
        session: { isolationKey: key.right },
        identity,
        attributes: { interaction_id: interaction.id, channel_id: channelId, user_id: user.id, command: name },
        stream: false
      }
      return yield* background(located, (conversation) => custom.handle({ request, args, reply: conversation.send }))
    })

  const handler = ChannelModule.handler((input) =>
    Effect.gen(function*() {
      const body = yield* Effect.either(readBytes(input.request, ctx.settings.maxBodyBytes))
      if (body._tag === "Left") {
        const problem = describeBodyError(body.left)
        return errorJson(problem.status, problem.type, problem.message)
      }
      if (deps.key === undefined) {
        return errorJson(401, "invalid_signature", "the channel's public key is not usable (DISCORD_PUBLIC_KEY)")
      }
      const headers = input.request.headers
      const verified = Verify.verify(deps.key, {
        signature: headers["x-signature-ed25519"],
        timestamp: headers["x-signature-timestamp"],
        body: body.right
      }, yield* Clock.currentTimeMillis)
      if (Either.isLeft(verified)) return errorJson(401, "invalid_signature", verified.left)

      const parsed = yield* Effect.either(parseJsonBytes(body.right, ctx.settings))
      if (parsed._tag === "Left") {
        const problem = describeBodyError(parsed.left)
        return errorJson(problem.status, problem.type, problem.message)
      }
      const raw = parsed.right
      const decoded = decodeInteraction(raw)
      if (Either.isLeft(decoded)) {
        return errorJson(400, "invalid_interaction", `the body is not a Discord interaction: ${decoded.left.message}`)
      }
      const interaction = decoded.right
      if (interaction.type === InteractionType.ping) return json({ type: CallbackType.pong })
      if (interaction.application_id !== deps.applicationId) {
        return errorJson(400, "invalid_interaction", "the interaction is for another application")
      }
      // A signed body may be replayed while its timestamp is fresh; each interaction runs once.
      // Seen-id window: an interaction cannot be answered after 15 minutes, so an hour covers any redelivery.
      if (!(yield* ctx.state.markSeen(seenNamespace, interaction.id, Duration.hours(1)))) {
        return errorJson(409, "duplicate_interaction", `interaction ${interaction.id} was already handled`)
      }
      switch (interaction.type) {
        case InteractionType.applicationCommand:
          return yield* command(interaction, raw)
        case InteractionType.autocomplete:
          return json({ type: CallbackType.autocompleteResult, data: { choices: [] } })
        case InteractionType.messageComponent:
        case InteractionType.modalSubmit:
          return message("Buttons and forms are not supported here; use /ask instead.")
        default:
          return errorJson(400, "unsupported_interaction", `interaction type ${interaction.type} is not supported`)
      }
    }).pipe(Effect.annotateLogs({ channel: deps.name }))
  )
  return { method: "POST", path: "/interactions", handler }
}
