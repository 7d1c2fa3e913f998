/**
 * Account linking on Telegram: `/link` (a sign-in URL button), `/unlink`, `/whoami`, and the sign-in challenge a
 * turn gets when the host requires it. A link belongs to the person (the sender), never to a group: in a group the
 * challenge (and what `/whoami` shows) goes to the sender by private message and is never posted in the group.
 * The bot can only write to someone who has started a private chat with it; otherwise the group is told so.
 */
import { Effect, Option, Schema } from "effect"
import type { ChannelCommand, ChannelLinking, CommandContext } from "../../core/Channel.js"
import type { ChannelRequest } from "../../domain/ChannelRequest.js"
import type { LinkRequiredError } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import type * as BotApi from "./BotApi.js"
import type { ChatTarget } from "./Replies.js"

export interface Linking {
  /** The commands, when the host has a linker that offers them (none otherwise). */
  readonly commands: ReadonlyArray<ChannelCommand>
  /** Shows a turn's sign-in challenge: in the chat when private, by private message when in a group. */
  readonly challenge: (request: ChannelRequest, target: ChatTarget, error: LinkRequiredError) => Effect.Effect<void>
}

/** The sender's private chat, when the request comes from a group (a private chat's id is the user's id). */
const privateChatOf = (request: ChannelRequest): number | undefined => {
  const chat = request.attributes?.chat_id
  const user = request.attributes?.user_id
  if (typeof user !== "number") return undefined
  return chat === user ? undefined : user
}

/** The person, for linking: the sender, whatever chat they wrote in. */
const personOf = (request: ChannelRequest): ChannelIdentity | undefined => {
  const identity = request.identity
  if (identity === undefined) return undefined
  const user = request.attributes?.user_id
  return typeof user === "number" ?
    // The username names the person on the sign-in confirmation page.
    {
      channel: identity.channel,
      nativeId: String(user),
      attributes: { user_id: user, username: identity.attributes?.username }
    } :
    identity
}

export const make = (api: BotApi.BotApi, linking: ChannelLinking | undefined): Linking => {
  /** A message with a URL button; plain text with the URL when Telegram refuses the button (e.g. a local URL). */
  const sendLink = (chatId: number | string, threadId: number | undefined, text: string, url: string) => {
    const base = { chat_id: chatId, ...(threadId === undefined ? {} : { message_thread_id: threadId }) }
    return api.call(
      "sendMessage",
      { ...base, text, reply_markup: { inline_keyboard: [[{ text: "Sign in", url }]] } },
      Schema.Unknown
    ).pipe(
      Effect.catchAll(() => api.call("sendMessage", { ...base, text: `${text}\n${url}` }, Schema.Unknown)),
      Effect.asVoid
    )
  }

  const sendText = (chatId: number | string, threadId: number | undefined, text: string) =>
    api.call(
      "sendMessage",
      { chat_id: chatId, ...(threadId === undefined ? {} : { message_thread_id: threadId }), text },
      Schema.Unknown
    ).pipe(Effect.asVoid)

  const logged = <E extends { readonly message: string }>(effect: Effect.Effect<void, E>) =>
    Effect.catchAll(effect, (error) => Effect.logWarning("telegram link message failed", error.message))

  /** Sends `send` to the sender privately; in a group, tells the group where it went (or why it could not). */
  const privately = (
    request: ChannelRequest,
    target: ChatTarget,
    send: (chatId: number | string, threadId: number | undefined) => Effect.Effect<void, BotApi.BotApiError>,
    note: string
  ) => {
    const dm = privateChatOf(request)
    if (dm === undefined) return logged(send(target.chatId, target.threadId))
    return send(dm, undefined).pipe(
      Effect.matchEffect({
        onSuccess: () => logged(sendText(target.chatId, target.threadId, note)),
        onFailure: () =>
          logged(sendText(
            target.chatId,
            target.threadId,
            "I can't send you a private message yet: open a private chat with me, press Start, then try again."
          ))
      })
    )
  }

  const challenge = (request: ChannelRequest, target: ChatTarget, error: LinkRequiredError) =>
    error.url === undefined ?
      logged(sendText(target.chatId, target.threadId, error.message)) :
      privately(
        request,
        target,
        (chatId, threadId) => sendLink(chatId, threadId, error.message, error.url!),
        "Please sign in first: I sent you a private message with the link."
      )

  const targetOf = (c: CommandContext): ChatTarget => ({
    chatId: c.request.attributes?.chat_id as number,
    threadId: c.request.attributes?.message_thread_id as number | undefined
  })

  if (linking === undefined) return { commands: [], challenge }

  const commands: ReadonlyArray<ChannelCommand> = [
    {
      name: "link",
      description: "Link your account (sign in)",
      handle: (c) =>
        Effect.gen(function*() {
          const person = personOf(c.request)
          if (person === undefined) return yield* c.reply("I can't tell who you are in this chat.")
          const offer = yield* linking.offer(person)
          yield* privately(
            c.request,
            targetOf(c),
            (chatId, threadId) => sendLink(chatId, threadId, offer.message, offer.url),
            "I sent you a private message with the sign-in link."
          )
        })
    },
    {
      name: "unlink",
      description: "Unlink your account",
      handle: (c) =>
        Effect.gen(function*() {
          const person = personOf(c.request)
          if (person === undefined) return yield* c.reply("I can't tell who you are in this chat.")
          const removed = yield* linking.unlink(person)
          yield* c.reply(removed ? "Your account is unlinked." : "Your account is not linked.")
        })
    },
    {
      name: "whoami",
      description: "Show the account you are linked to",
      handle: (c) =>
        Effect.gen(function*() {
          const person = personOf(c.request)
          if (person === undefined) return yield* c.reply("I can't tell who you are in this chat.")
          const found = yield* linking.linkOf(person)
          const text = Option.match(found, {
            onNone: () => "Your account is not linked. Send /link to sign in.",
            onSome: (view) => {
              const who = typeof view.claims.email === "string" ? view.claims.email : view.subject
              const others = view.linkedIdentities
                .filter((i) => !(i.channel === person.channel && i.nativeId === person.nativeId))
                .map((i) => `${i.channel}:${i.nativeId}`)
              return [
                `You are linked as ${who}.`,
                ...(others.length === 0 ? [] : [`Also linked: ${others.join(", ")}.`])
              ].join("\n")
            }
          })
          // What you are linked as is yours to see: in a group it goes by private message.
          yield* privately(
            c.request,
            targetOf(c),
            (chatId, threadId) => sendText(chatId, threadId, text),
            "I sent you a private message."
          )
        })
    }
  ]
  return { commands, challenge }
}
