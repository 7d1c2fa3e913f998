/**
 * Errors that cross a channel's wire. Each carries a message a caller can act on; channels map the tag to
 * their own error shape (OpenAI envelope, Telegram text, SSE error frame).
 */
import { Duration, Schema } from "effect"

/** The input was readable but wrong. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  param: Schema.optional(Schema.String)
}) {}

/** An isolation key (header, channel-derived, or configured) failed validation. */
export class InvalidIsolationKey extends Schema.TaggedError<InvalidIsolationKey>()("InvalidIsolationKey", {
  key: Schema.String,
  message: Schema.String
}) {}

/** The session is running a turn and the channel's busy policy is `reject`. */
export class SessionBusy extends Schema.TaggedError<SessionBusy>()("SessionBusy", {
  key: Schema.String,
  message: Schema.String
}) {}

/** Every live session is busy and no more may be created right now. */
export class SessionCapacityExceeded extends Schema.TaggedError<SessionCapacityExceeded>()(
  "SessionCapacityExceeded",
  { limit: Schema.Number, message: Schema.String }
) {}

/** The session already has as many turns waiting as it may hold; the caller should retry after `retryAfter`. */
export class MailboxFull extends Schema.TaggedError<MailboxFull>()("MailboxFull", {
  key: Schema.String,
  limit: Schema.Number,
  retryAfter: Schema.DurationFromSelf,
  message: Schema.String
}) {}

/**
 * A push (a reply sent to a channel without an inbound request) failed. The durable runner tries a `retryable` one
 * again (`rate_limited`, `unavailable`, `unreachable`, `timeout`), after `retryAfter` when the destination asked
 * for a wait (a 429's retry-after) instead of its schedule's delay; a terminal one (`rejected`: a 4xx, an identity
 * the channel cannot address) goes to the dead letters (`GET /admin/tasks?status=failed`).
 */
export class PushFailed extends Schema.TaggedError<PushFailed>()("PushFailed", {
  reason: Schema.Literal("rate_limited", "unavailable", "unreachable", "timeout", "rejected"),
  retryable: Schema.Boolean,
  retryAfter: Schema.optional(Schema.DurationFromMillis),
  message: Schema.String
}) {}

/**
 * Replies to other channels cannot be accepted right now: the durable push queue is full (a destination is slow
 * or down). Refused before the turn runs, so nothing is half done; the caller should retry after `retryAfter`.
 */
export class PushQueueFull extends Schema.TaggedError<PushQueueFull>()("PushQueueFull", {
  limit: Schema.Number,
  retryAfter: Schema.DurationFromSelf,
  message: Schema.String
}) {}

/**
 * The turn was cancelled: by the `interrupt` busy policy or a caller (`reason` absent or `cancelled`), or because
 * the host shut down before it finished (`shutdown`: send it again once the host is back; 503 on HTTP).
 */
export class TurnCancelled extends Schema.TaggedError<TurnCancelled>()("TurnCancelled", {
  key: Schema.String,
  message: Schema.String,
  reason: Schema.optional(Schema.Literal("cancelled", "shutdown"))
}) {}

/** True when the turn was ended by the host's shutdown (its grace period ran out). */
export const isShutdown = (error: TurnError): boolean => error._tag === "TurnCancelled" && error.reason === "shutdown"

/** The target failed; `message` is safe to show to the caller. */
export class AgentError extends Schema.TaggedError<AgentError>()("AgentError", {
  message: Schema.String,
  code: Schema.optional(Schema.String),
  /** Names the failure in the host's log, where its details are (they are not shown to the caller). */
  requestId: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {}

/** The authorization decision refused the caller. `userMessage` is safe to show; details stay in logs. */
export class AccessDenied extends Schema.TaggedError<AccessDenied>()("AccessDenied", {
  reasonCode: Schema.String,
  message: Schema.String
}) {}

/** The caller must link an account first; `url` is where. */
export class LinkRequiredError extends Schema.TaggedError<LinkRequiredError>()("LinkRequiredError", {
  challengeId: Schema.String,
  url: Schema.optional(Schema.String),
  expiresAt: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/** Everything a turn can fail with. */
export type TurnError =
  | InvalidRequest
  | InvalidIsolationKey
  | SessionBusy
  | SessionCapacityExceeded
  | MailboxFull
  | PushQueueFull
  | TurnCancelled
  | AgentError
  | AccessDenied
  | LinkRequiredError

/**
 * A channel failed to start (bad config, unreachable upstream). The host keeps serving the other channels and
 * retries with backoff; `retryable: false` (a misconfiguration that can never succeed, e.g. a token the upstream
 * refuses) stops the retries and leaves the channel unready until a restart.
 */
export class ChannelStartupError extends Schema.TaggedError<ChannelStartupError>()("ChannelStartupError", {
  channel: Schema.String,
  message: Schema.String,
  retryable: Schema.optional(Schema.Boolean),
  cause: Schema.optional(Schema.Defect)
}) {}

/** The host's configuration cannot work (unknown channel named, duplicate routes, ...). */
export class HostConfigurationError extends Schema.TaggedError<HostConfigurationError>()("HostConfigurationError", {
  message: Schema.String,
  channel: Schema.optional(Schema.String)
}) {}

/** HTTP status for a turn error, shared by the HTTP channels. */
export const turnErrorStatus = (error: TurnError): number => {
  switch (error._tag) {
    case "InvalidRequest":
    case "InvalidIsolationKey":
      return 400
    case "AccessDenied":
      return 403
    case "LinkRequiredError":
      return 403
    case "SessionBusy":
      return 409
    case "SessionCapacityExceeded":
      return 503
    case "MailboxFull":
      return 429
    case "PushQueueFull":
      return 503
    case "TurnCancelled":
      return error.reason === "shutdown" ? 503 : 409
    case "AgentError":
      return 500
  }
}

/** Extra HTTP headers for a turn error: `retry-after` (whole seconds) when the caller should come back later. */
export const turnErrorHeaders = (error: TurnError): Record<string, string> | undefined =>
  error._tag === "MailboxFull" || error._tag === "PushQueueFull" ?
    { "retry-after": String(Math.max(1, Math.ceil(Duration.toSeconds(error.retryAfter)))) } :
    isShutdown(error) ?
    // The host is going away: retry on the next process, on a new connection.
    { "retry-after": "5", connection: "close" } :
    undefined
