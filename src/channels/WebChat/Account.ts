/**
 * Account linking on the web chat: the page's "Link your account" button. A browser is the identity
 * `webchat:<user>`; it links with the host's sign-in flow (the same `/link/start` URL Telegram's `/link` sends),
 * and once linked with shared sessions (`link_sessions`) its conversation is the person's: the key their other
 * linked identities use, so a conversation started in Telegram continues here.
 * - `GET account?user=` what the page shows: whether linking is offered, and the link (who, since when);
 * - `POST link` `{ user }` a fresh sign-in URL for this browser; `POST unlink` `{ user }` removes its link.
 */
import { Effect, Option } from "effect"
import type { ChannelLinking, LinkView } from "../../core/Channel.js"
import type { ChannelIdentity } from "../../domain/Identity.js"
import { identityToken } from "../../domain/Identity.js"

/** The conversation key of a linked browser, when its link shares the person's key; none otherwise. */
export const sharedKey = (
  linking: ChannelLinking | undefined,
  identity: ChannelIdentity
): Effect.Effect<Option.Option<string>> =>
  linking === undefined ?
    Effect.succeedNone :
    Effect.map(
      linking.linkOf(identity),
      Option.flatMap((view) =>
        view.isolationKey === identityToken(identity) ? Option.none() : Option.some(view.isolationKey)
      )
    )

const firstString = (value: string | ReadonlyArray<string> | undefined) => typeof value === "string" ? value : undefined

/** What the page shows about a link: a name to show, and no claim the page does not need. */
export const viewJson = (view: LinkView, identity: ChannelIdentity) => ({
  linked: true,
  as: firstString(view.claims.email) ?? firstString(view.claims.preferred_username) ??
    firstString(view.claims.name) ?? view.subject,
  linkedAt: view.linkedAt,
  shared: view.isolationKey !== identityToken(identity),
  linkedIdentities: view.linkedIdentities.length
})
