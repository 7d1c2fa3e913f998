/**
 * Account linking on Bot Framework / Teams: `/link`, `/unlink`, `/whoami` (typed, or after the bot's `<at>`
 * mention in a group), and the sign-in challenge a turn gets when the host requires a link. The link is shown as a
 * sign-in card (`application/vnd.microsoft.card.signin`) whose button is an `openUrl` action: the host's own link
 * page in the default browser. Teams' `signin` action would open Teams' authentication pop-up instead, which only
 * closes when the page calls the Teams JS SDK; the host's pages are plain pages for any client.
 *
 * A link belongs to the person (the sender), never to a group, and a sign-in link is theirs alone: in a group chat
 * or a channel the card (and what `/whoami` shows) goes to the sender's 1:1 chat with the bot, created through the
 * connector when none is known, and the group is told only that it went there (or that it could not).
 */
import { Effect, Option, Schema } from "effect"
import type { ChannelContext, ChannelLinking, LinkView } from "../../core/Channel.js"
import type { LinkRequiredError } from "../../domain/Errors.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import * as Cards from "./Cards.js"
import type { Connector, ConnectorError } from "./Connector.js"
import { withRetry } from "./Connector.js"
import { decodeStoredReference, referenceKey, userIdOf } from "./Inbound.js"
import type { Target } from "./Replies.js"
import type { Activity } from "./Schema.js"
import { isGroup, ReferenceJson, referenceOf, tenantOf } from "./Schema.js"

export const SIGNIN_CARD = "application/vnd.microsoft.card.signin"

/** A message with a sign-in card: `text` above one button that opens `url` in the browser. */
export const signinCard = (text: string, url: string): Record<string, unknown> => ({
  type: "message",
  text,
  textFormat: "plain",
  attachments: [{
    contentType: SIGNIN_CARD,
    content: { text, buttons: [{ type: "openUrl", title: "Sign in", value: url }] }
  }]
})

/** The linking commands this channel knows. */
export type LinkCommand = "link" | "unlink" | "whoami"

/** `/link`, `/unlink` or `/whoami` (any case, nothing after it but spaces), once mentions are stripped. */
export const parseCommand = (text: string): LinkCommand | undefined => {
  const match = /^\/(link|unlink|whoami)$/i.exec(text.trim())
  return match === null ? undefined : match[1]!.toLowerCase() as LinkCommand
}

// Claims `/whoami` leaves out: ids and timestamps the person cannot read anything from.
const hiddenClaims = new Set(["sub", "iss", "auth_time", "email_verified"])
const clip = (text: string, max: number) => text.length <= max ? text : `${text.slice(0, max - 1)}…`

/** What `/whoami` says: who, the verified claims in a line, and the person's other linked identities. */
export const whoamiText = (view: LinkView, person: ChannelIdentity): string => {
  const who = typeof view.claims.email === "string" ? view.claims.email : view.subject
  const claims = Object.entries(view.claims)
    .filter(([name]) => !hiddenClaims.has(name))
    .slice(0, 8)
    .map(([name, value]) => `${name}: ${clip(typeof value === "string" ? value : value.join(", "), 120)}`)
  const others = view.linkedIdentities
    .filter((i) => !(i.channel === person.channel && i.nativeId === person.nativeId))
    .map((i) => `${i.channel}:${i.nativeId}`)
  return [
    `You are linked as ${who} (subject ${view.subject}).`,
    ...(claims.length === 0 ? [] : [`Verified claims: ${claims.join("; ")}.`]),
    ...(others.length === 0 ? [] : [`Also linked: ${others.slice(0, 10).join(", ")}.`])
  ].join("\n")
}

export const texts = {
  sentLink: "I sent you a sign-in link in a private chat.",
  sentWhoami: "I sent you the details in a private chat.",
  noPrivateChat: "I couldn't open a private chat with you to send the sign-in link. Open a chat with me (find me " +
    "under Apps, or select my name and Chat), then send /link there.",
  noPrivateWhoami: "I couldn't open a private chat with you. Open a chat with me, then send /whoami there.",
  unlinked: "Your account is unlinked.",
  notLinked: "Your account is not linked.",
  notLinkedWhoami: "Your account is not linked. Send /link to sign in."
} as const

export interface Linking {
  /** The command in `text`, when it is one and the host has a linker that offers commands. */
  readonly commandOf: (text: string) => LinkCommand | undefined
  /** Runs a linking command for the sender of `activity`. */
  readonly run: (command: LinkCommand, activity: Activity, person: ChannelIdentity) => Effect.Effect<void>
  /** Shows a turn's sign-in challenge: a card in a 1:1 chat, in the sender's 1:1 chat when in a group. */
  readonly challenge: (activity: Activity, target: Target, error: LinkRequiredError) => Effect.Effect<void>
}

const encodeReference = Schema.encodeSync(ReferenceJson)

export const make = (deps: {
  readonly ctx: ChannelContext
  readonly connector: Connector
  readonly name: string
  readonly linking: ChannelLinking | undefined
  readonly say: (target: Target, text: string) => Effect.Effect<void>
}): Linking => {
  const { connector, ctx } = deps

  const send = (target: Target, activity: Record<string, unknown>) =>
    withRetry(connector.send(target.serviceUrl, target.conversationId, activity, target.replyToId))

  /**
   * The sender's 1:1 conversation: the stored one when they wrote to the bot there (or one was created before),
   * else a new one, remembered like a push's (`stored`: which of the two).
   */
  const personalTarget = (activity: Activity, fresh: boolean) =>
    Effect.gen(function*() {
      const key = referenceKey(deps.name, userIdOf(activity))
      if (!fresh) {
        const stored = yield* ctx.state.getCursor(key)
        const reference = Option.flatMap(stored, decodeStoredReference)
        if (
          Option.isSome(reference) && reference.value.personal && reference.value.serviceUrl === activity.serviceUrl
        ) {
          return { target: targetIn(activity, reference.value.conversationId), stored: true }
        }
      }
      const conversationId = yield* withRetry(connector.createConversation(activity.serviceUrl, {
        bot: activity.recipient,
        user: activity.from,
        tenantId: tenantOf(activity)
      }))
      yield* ctx.state.setCursor(key, encodeReference({ ...referenceOf(activity), conversationId, personal: true }))
      return { target: targetIn(activity, conversationId), stored: false }
    })

  const targetIn = (activity: Activity, conversationId: string): Target => ({
    serviceUrl: activity.serviceUrl,
    conversationId,
    replyToId: undefined,
    teams: activity.channelId === "msteams",
    personal: true
  })

  /**
   * A short text for the group, addressed to the sender: in Teams with an `<at>` mention (a channel is busy, and
   * the note is about one person's private chat).
   */
  const note = (activity: Activity, target: Target, text: string) => {
    const name = activity.from.name?.replace(/[<>]/g, "").trim()
    if (activity.channelId !== "msteams" || name === undefined || name.length === 0) return deps.say(target, text)
    const at = `<at>${name}</at>`
    return send(target, {
      ...Cards.text(`${at} ${text}`),
      entities: [{ type: "mention", text: at, mentioned: { id: activity.from.id, name } }]
    }).pipe(
      Effect.asVoid,
      Effect.catchAll((error) => Effect.logWarning("could not send to the conversation", error.message))
    )
  }

  /**
   * Sends `message` to the sender in private: in place in a 1:1 chat; from a group, to their 1:1 chat (a stored
   * one that fails is replaced by a new one, once), and the group gets `sent`, or `unreachable` when it failed.
   */
  const privately = (
    activity: Activity,
    target: Target,
    message: Record<string, unknown>,
    sent: string,
    unreachable: string
  ): Effect.Effect<void> => {
    if (!isGroup(activity)) {
      return send(target, message).pipe(
        Effect.asVoid,
        Effect.catchAll((error) => Effect.logWarning("could not send the sign-in message", error.message))
      )
    }
    const deliver = (fresh: boolean): Effect.Effect<void, ConnectorError> =>
      Effect.flatMap(personalTarget(activity, fresh), (dm) =>
        send(dm.target, message).pipe(
          Effect.asVoid,
          // A stored chat may be gone (the bot was removed from it): a new one is asked for, once.
          Effect.catchAll((error) => dm.stored ? deliver(true) : Effect.fail(error))
        ))
    return deliver(false).pipe(
      Effect.matchEffect({
        onSuccess: () => note(activity, target, sent),
        onFailure: (error) =>
          Effect.zipRight(
            Effect.logWarning("could not open a private chat for the sign-in message", error.message),
            note(activity, target, unreachable)
          )
      })
    )
  }

  const challenge = (activity: Activity, target: Target, error: LinkRequiredError) =>
    Effect.zipRight(
      Effect.logInfo("turn needs sign-in"),
      error.url === undefined ?
        deps.say(target, error.message) :
        privately(activity, target, signinCard(error.message, error.url), texts.sentLink, texts.noPrivateChat)
    )

  const linking = deps.linking
  if (linking === undefined) {
    return { commandOf: () => undefined, run: () => Effect.void, challenge }
  }

  const run = (command: LinkCommand, activity: Activity, person: ChannelIdentity) => {
    const target: Target = {
      serviceUrl: activity.serviceUrl,
      conversationId: activity.conversation.id,
      replyToId: activity.id,
      teams: activity.channelId === "msteams",
      personal: !isGroup(activity)
    }
    switch (command) {
      case "link":
        return Effect.flatMap(
          linking.offer(person),
          (offer) =>
            privately(activity, target, signinCard(offer.message, offer.url), texts.sentLink, texts.noPrivateChat)
        )
      case "unlink":
        return Effect.flatMap(
          linking.unlink(person),
          (removed) => deps.say(target, removed ? texts.unlinked : texts.notLinked)
        )
      case "whoami":
        return Effect.flatMap(linking.linkOf(person), (found) =>
          Option.match(found, {
            onNone: () => deps.say(target, texts.notLinkedWhoami),
            // What the person is linked as is theirs to see: from a group it goes to their 1:1 chat.
            onSome: (view) =>
              privately(
                activity,
                target,
                Cards.text(whoamiText(view, person)),
                texts.sentWhoami,
                texts.noPrivateWhoami
              )
          }))
    }
  }

  return { commandOf: parseCommand, run, challenge }
}
