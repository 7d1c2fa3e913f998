/**
 * What crosses between runners for a forwarded turn: the prepared request, the outcome, a stream's events and the
 * turn's errors, as schemas (the cluster's RPC encodes them with msgpack). Errors whose fields do not survive a
 * wire (`Duration`) travel as millis and are rebuilt as the same classes, so a channel renders a forwarded turn's
 * failure exactly as a local one.
 */
import { Duration, Option, Schema } from "effect"
import type { TurnOutcome } from "../core/Channel.js"
import type { IsolationKeys } from "../core/RequestContext.js"
import { ChannelRequest } from "../domain/ChannelRequest.js"
import type { HostedRunResult } from "../domain/ChannelRequest.js"
import {
  AccessDenied,
  AgentError,
  InvalidIsolationKey,
  InvalidRequest,
  LinkRequiredError,
  MailboxFull,
  PushQueueFull,
  SessionBusy,
  SessionCapacityExceeded,
  TurnCancelled
} from "../domain/Errors.js"
import type { TurnError } from "../domain/Errors.js"
import { ChannelSession } from "../domain/Identity.js"
import { AgentResponse, AgentResponseUpdate } from "../domain/Message.js"

/** A turn handed to the runner owning its key: prepared (hook, checks, authorization) by the receiving host. */
export const TurnPayloadFields = {
  /** Issued by the receiving host; the owner admits it once (a resend after a runner died mid-turn is refused). */
  turnId: Schema.String,
  /** The runner address (`host:port`) of the receiving host: the owner tells its own turns from forwarded ones. */
  from: Schema.String,
  channel: Schema.String,
  request: ChannelRequest,
  user: Schema.optional(Schema.String),
  chat: Schema.optional(Schema.String)
}

const TurnPayloadStruct = Schema.Struct(TurnPayloadFields)

/**
 * The payload schema of a forwarded turn. A transformation rather than the struct: the entity client calls a
 * payload schema's `make`, which validates the whole request against a type AST it derives anew on every call
 * (no parser cache hit), a cost per turn; the request was already checked by the host that prepared it.
 */
export const TurnPayload: Schema.Schema<typeof TurnPayloadStruct.Type, typeof TurnPayloadStruct.Encoded> = Schema
  .transform(TurnPayloadStruct, Schema.typeSchema(TurnPayloadStruct), {
    strict: true,
    decode: (payload) => payload,
    encode: (payload) => payload
  })

export const isolationOf = (payload: { readonly user?: string | undefined; readonly chat?: string | undefined }) =>
  ({ user: payload.user, chat: payload.chat }) satisfies IsolationKeys

export const isolationFields = (isolation: IsolationKeys) => ({
  ...(isolation.user === undefined ? {} : { user: isolation.user }),
  ...(isolation.chat === undefined ? {} : { chat: isolation.chat })
})

const Hosted = Schema.Struct({
  response: AgentResponse,
  /** Absent when the result is the response itself (an agent's turn): sent once. */
  result: Schema.optional(Schema.Unknown),
  resultIsResponse: Schema.Boolean,
  session: Schema.optional(ChannelSession),
  sessionId: Schema.optional(Schema.String)
})
type Hosted = typeof Hosted.Type

export const Outcome = Schema.Struct({ result: Hosted, originating: Schema.Option(Hosted) })
export type Outcome = typeof Outcome.Type

const hostedToWire = (hosted: HostedRunResult): Hosted => ({
  response: hosted.response,
  resultIsResponse: hosted.result === hosted.response,
  ...(hosted.result === hosted.response ? {} : { result: hosted.result }),
  ...(hosted.session === undefined ? {} : { session: hosted.session }),
  ...(hosted.sessionId === undefined ? {} : { sessionId: hosted.sessionId })
})

const hostedFromWire = (wire: Hosted): HostedRunResult => ({
  result: wire.resultIsResponse ? wire.response : wire.result,
  response: wire.response,
  session: wire.session,
  sessionId: wire.sessionId
})

export const outcomeToWire = (outcome: TurnOutcome): Outcome => ({
  result: hostedToWire(outcome.result),
  originating: Option.map(outcome.originating, hostedToWire)
})

export const outcomeFromWire = (wire: Outcome): TurnOutcome => ({
  result: hostedFromWire(wire.result),
  originating: Option.map(wire.originating, hostedFromWire)
})

/** A forwarded stream: `Started` once the owner accepted the turn, its updates, then its outcome. */
export const StreamEvent = Schema.Union(
  Schema.TaggedStruct("Started", {}),
  Schema.TaggedStruct("Update", { update: AgentResponseUpdate }),
  Schema.TaggedStruct("Outcome", { outcome: Outcome })
)
export type StreamEvent = typeof StreamEvent.Type

const MailboxFullWire = Schema.transform(
  Schema.TaggedStruct("MailboxFull", {
    key: Schema.String,
    limit: Schema.Number,
    retryAfterMillis: Schema.Number,
    message: Schema.String
  }),
  Schema.instanceOf(MailboxFull),
  {
    strict: true,
    decode: (w) =>
      new MailboxFull({
        key: w.key,
        limit: w.limit,
        retryAfter: Duration.millis(w.retryAfterMillis),
        message: w.message
      }),
    encode: (e) => ({
      _tag: "MailboxFull" as const,
      key: e.key,
      limit: e.limit,
      retryAfterMillis: Duration.toMillis(e.retryAfter),
      message: e.message
    })
  }
)

const PushQueueFullWire = Schema.transform(
  Schema.TaggedStruct("PushQueueFull", {
    limit: Schema.Number,
    retryAfterMillis: Schema.Number,
    message: Schema.String
  }),
  Schema.instanceOf(PushQueueFull),
  {
    strict: true,
    decode: (w) =>
      new PushQueueFull({ limit: w.limit, retryAfter: Duration.millis(w.retryAfterMillis), message: w.message }),
    encode: (e) => ({
      _tag: "PushQueueFull" as const,
      limit: e.limit,
      retryAfterMillis: Duration.toMillis(e.retryAfter),
      message: e.message
    })
  }
)

export const TurnErrorWire: Schema.Schema<TurnError, unknown> = Schema.Union(
  InvalidRequest,
  InvalidIsolationKey,
  SessionBusy,
  SessionCapacityExceeded,
  MailboxFullWire,
  PushQueueFullWire,
  TurnCancelled,
  AgentError,
  AccessDenied,
  LinkRequiredError
) as never
