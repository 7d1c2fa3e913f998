/**
 * Webhook transport: `POST <path>/webhook` checks Telegram's secret header (constant time), decodes the Update
 * and acknowledges as soon as it is queued; at startup `setWebhook` registers the URL, the secret and the update
 * kinds.
 *
 * When the queue refuses the update (its chat, or the whole channel, has as many updates waiting as it may hold)
 * the answer is 429 with `retry-after` and nothing about the update is kept: Telegram delivers it again later,
 * and meanwhile holds that chat's later updates (it delivers a chat's updates in sequence), so none is lost and
 * the chat's order holds.
 */
import type { Scope } from "effect"
import { Effect, Schema } from "effect"
import * as Crypto from "node:crypto"
import type { ChannelContext, Route } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import type { MailboxFull } from "../../domain/Errors.js"
import { describeBodyError, errorJson, json, readJson } from "../../http/HttpBody.js"
import { turnErrorJson } from "../../http/TurnErrors.js"
import type { Offered } from "../shared/ChatQueue.js"
import type { BotApiError } from "./BotApi.js"
import * as BotApi from "./BotApi.js"
import type { Update } from "./Updates.js"
import { allowedUpdates, decodeUpdate } from "./Updates.js"

const sha256 = (value: string) => Crypto.createHash("sha256").update(value).digest()

const SECRET_PATTERN = /^[A-Za-z0-9_-]{1,256}$/

/** Why the webhook cannot run as configured, or undefined when it can. */
export const configProblem = (webhookUrl: string | undefined, secret: string | undefined): string | undefined => {
  if (webhookUrl === undefined) return "webhook transport needs a webhook URL (TELEGRAM_WEBHOOK_URL)"
  if (secret === undefined || !SECRET_PATTERN.test(secret)) {
    return "webhook transport needs a secret token (TELEGRAM_SECRET_TOKEN): 1-256 characters of A-Z, a-z, 0-9, _ or -"
  }
  return undefined
}

/**
 * The webhook route; `accept` queues a decoded update (its turn runs in the background) or refuses it, and
 * `refusal` names why.
 */
export const route = (
  ctx: ChannelContext,
  secret: string | undefined,
  accept: (update: Update, raw: unknown) => Effect.Effect<Offered>,
  refusal: (update: Update, offered: Exclude<Offered, "queued">) => MailboxFull
): Route => {
  const expectedSecret = secret === undefined ? undefined : sha256(secret)
  const secretMatches = (header: string | undefined) =>
    expectedSecret !== undefined && header !== undefined &&
    Crypto.timingSafeEqual(sha256(header), expectedSecret)

  const handler = ChannelModule.handler((input) =>
    Effect.gen(function*() {
      if (!secretMatches(input.request.headers["x-telegram-bot-api-secret-token"])) {
        return errorJson(401, "unauthorized", "the X-Telegram-Bot-Api-Secret-Token header is missing or wrong")
      }
      const body = yield* Effect.either(readJson(input.request, ctx.settings))
      if (body._tag === "Left") {
        const problem = describeBodyError(body.left)
        return errorJson(problem.status, problem.type, problem.message)
      }
      const raw = body.right
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        return errorJson(400, "invalid_update", "the request body must be a JSON object (a Telegram Update)")
      }
      const update = decodeUpdate(raw)
      if (update._tag === "Left") {
        return errorJson(400, "invalid_update", `the body is not a Telegram Update: ${update.left.message}`)
      }
      // Acknowledge once queued: the turn runs in the background, in order with the chat's other updates.
      const offered = yield* accept(update.right, raw)
      if (offered !== "queued") return turnErrorJson(refusal(update.right, offered))
      return json({ ok: true })
    })
  )
  return { method: "POST", path: "/webhook", handler, body: "json" }
}

/**
 * Registers the webhook (retrying what is worth retrying); with `deleteOnShutdown`, unregisters it when the
 * scope closes.
 */
export const register = (api: BotApi.BotApi, options: {
  readonly url: string
  readonly secret: string
  readonly deleteOnShutdown: boolean
}): Effect.Effect<void, BotApiError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* BotApi.withRetry(
      api.call(
        "setWebhook",
        { url: options.url, allowed_updates: allowedUpdates, secret_token: options.secret },
        Schema.Unknown
      )
    )
    if (options.deleteOnShutdown) {
      yield* Effect.addFinalizer(() =>
        api.call("deleteWebhook", {}, Schema.Unknown, { timeout: "5 seconds" }).pipe(
          Effect.catchAll((error) => Effect.logWarning("deleteWebhook failed", error.message))
        )
      )
    }
  })
