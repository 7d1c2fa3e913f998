/**
 * The admin task routes (delivery/AdminRoutes.ts) in cluster mode: over the persisted `Deliver` messages of the
 * `AgentHostPush` entity (src/cluster/Pushes.ts), read from `@effect/cluster` 0.60's `SqlMessageStorage` tables. All
 * SQL over those tables is in this module. Their layout (default prefix `cluster`):
 *
 * - `cluster_messages`: one row per envelope. A push is `kind = 0` (a request), `tag = 'Deliver'`, `entity_type =
 *   'AgentHostPush'`, `entity_id` its destination, `id` the request's snowflake id (time ordered: the task id here),
 *   `message_id` its primary key `AgentHostPush/<destination>/Deliver/<idempotency key>` (SHA-256 hex when longer
 *   than 255), unique, `payload` the encoded `DeliverPayload` as JSON. An interrupt is `kind = 2` with `request_id` = the request's id.
 * - `cluster_replies`: a finished request has one row with `kind = 0` (`WithExit`), `payload` the encoded `Exit`
 *   as JSON: `{"_tag":"Success",...}` or `{"_tag":"Failure","cause":...}`.
 *
 * So: pending = no exit reply yet (delivering or waiting); succeeded = a Success; cancelled = a Failure whose cause
 * holds interruptions only; failed (the dead letters) = a Failure with an error (`PushFailed`) or a defect.
 *
 * - **Replay** of a failed or cancelled push stores a new `Deliver` message with the same payload and a new
 *   idempotency key derived from the old (`<key>#replay1`, then `#replay2` for a replay of that one...). The key is
 *   the message's primary key, so replaying the same dead letter again finds the first replay (refused, naming it)
 *   and two replays racing store one message: at most once.
 * - **Cancel** of a pending push sends the cluster's own `Interrupt` envelope for the request (what a client sends
 *   when its caller interrupts a persisted request): it is stored, then the owner of the destination's shard
 *   interrupts the delivery (queued or under way), and the request's exit reply records the interruption. Writing
 *   the reply row directly would not be safe: the owner may already hold the message in memory and deliver it
 *   anyway, then fail to store its own reply. A push interrupted while its HTTP call is under way may have reached
 *   the destination (as with the task runner's cancel). When the owner is down, the interrupt waits in storage with
 *   the request and is applied when the next owner reads both (202: requested).
 *
 * Not here: attempts and the next attempt time (the handler retries in memory; storage does not see them). Listing
 * a rare status scans newest-first over the message table's primary key until a page is full.
 */
import * as EntityAddress from "@effect/cluster/EntityAddress"
import * as EntityId from "@effect/cluster/EntityId"
import * as Envelope from "@effect/cluster/Envelope"
import * as Message from "@effect/cluster/Message"
import * as ShardId from "@effect/cluster/ShardId"
import * as Sharding from "@effect/cluster/Sharding"
import * as Snowflake from "@effect/cluster/Snowflake"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Redacted } from "effect"
import { Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import { createHash } from "node:crypto"
import { AdminRefused, TaskAdmin } from "../delivery/AdminRoutes.js"
import { DeliverPayload, PushEntity } from "./Pushes.js"

const messagesTable = "cluster_messages"
const repliesTable = "cluster_replies"

export const statuses = ["pending", "succeeded", "failed", "cancelled"] as const
type Status = typeof statuses[number]

/** How long `cancel` waits for the owner to record the interruption before answering "requested". */
const cancelWait = Duration.seconds(5)

interface Row {
  readonly id: string
  readonly message_id: string | null
  readonly shard_id: string
  readonly entity_id: string
  readonly payload: string | null
  readonly reply_id: string | null
  readonly reply: string | null
}

type Json = Record<string, unknown>
const isObject = (u: unknown): u is Json => typeof u === "object" && u !== null
const parse = (text: string | null): unknown => {
  if (text === null) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The message of the first error or defect in an encoded `Cause` (nested in `Sequential`/`Parallel`), or undefined
 * when it holds none: an interruption only (its tree is `Interrupt` and `Empty` nodes).
 */
const failureIn = (cause: unknown): string | undefined => {
  if (!isObject(cause)) return undefined
  switch (cause._tag) {
    case "Fail":
      return isObject(cause.error) && typeof cause.error.message === "string" ?
        cause.error.message :
        JSON.stringify(cause.error)
    case "Die":
      return isObject(cause.defect) && typeof cause.defect.message === "string" ?
        cause.defect.message :
        String(cause.defect)
    case "Sequential":
    case "Parallel":
      return failureIn(cause.left) ?? failureIn(cause.right)
    default:
      return undefined
  }
}

const outcome = (reply: string | null): { readonly status: Status; readonly error: string | null } => {
  if (reply === null) return { status: "pending", error: null }
  const exit = parse(reply)
  if (isObject(exit) && exit._tag === "Success") return { status: "succeeded", error: null }
  // The same rule as the SQL filters below: a failure without an error or a defect is a cancel.
  const error = failureIn(isObject(exit) ? exit.cause : undefined)
  return error === undefined ? { status: "cancelled", error: "cancelled" } : { status: "failed", error }
}

const millisOf = (id: string) => Snowflake.timestamp(Snowflake.Snowflake(id))

/** A push as the admin API shows it: the task view's fields, without its payload. */
export const view = (row: Row) => {
  const payload = parse(row.payload)
  const { error, status } = outcome(row.reply)
  return {
    id: row.id,
    name: "cluster.push",
    idempotency_key: isObject(payload) && typeof payload.idempotencyKey === "string" ?
      payload.idempotencyKey :
      row.message_id,
    status,
    attempts: null,
    phase: null,
    next_attempt_at: null,
    last_error: error,
    created_at: millisOf(row.id),
    updated_at: row.reply_id === null ? millisOf(row.id) : millisOf(row.reply_id),
    channel: isObject(payload) && typeof payload.channel === "string" ? payload.channel : null,
    destination: row.entity_id
  }
}

/** The idempotency key of a replay: `<key>#replay1`, or the next number for a replay's replay. */
export const replayKey = (key: string): string => {
  const match = /^(.*)#replay(\d+)$/.exec(key)
  return match === null ? `${key}#replay1` : `${match[1]}#replay${Number(match[2]) + 1}`
}

// The `message_id` of a push: the cluster's primary key (`Envelope.primaryKeyByAddress`), as SqlMessageStorage
// stores it: as is up to 255 characters, else its SHA-256 in hex.
const messageIdFor = (entityId: string, key: string) => {
  const primaryKey = `${PushEntity.type}/${entityId}/Deliver/${key}`
  return primaryKey.length <= 255 ? primaryKey : createHash("sha256").update(primaryKey).digest("hex")
}

const isId = (id: string) => /^\d{1,20}$/.test(id)

export const make = Effect.gen(function*() {
  const sql = (yield* SqlClient.SqlClient).withoutTransforms()
  const sharding = yield* Sharding.Sharding
  const clientFor = yield* PushEntity.client
  const deliverRpc = PushEntity.protocol.requests.get("Deliver")!
  const decodePayload = Schema.decodeUnknown(DeliverPayload)

  const unavailable = (cause: unknown) =>
    new AdminRefused({
      status: 503,
      code: "storage_unavailable",
      message: `the cluster's message storage did not answer (${
        isObject(cause) && typeof cause.message === "string" ? cause.message : String(cause)
      }); try again`
    })

  const messages = sql(messagesTable)
  const replies = sql(repliesTable)
  const pushes = sql`m.entity_type = ${PushEntity.type} AND m.kind = 0 AND m.tag = 'Deliver'`
  const select = sql`
    SELECT m.id::text AS id, m.message_id, m.shard_id, m.entity_id, m.payload,
      r.id::text AS reply_id, r.payload AS reply
    FROM ${messages} m
    LEFT JOIN ${replies} r ON r.request_id = m.id AND r.kind = 0`
  // Status filters on the exit reply, matching `outcome`.
  const exitTag = sql.literal(`(r.payload::jsonb ->> '_tag')`)
  const hasError = sql.literal(
    `jsonb_path_exists(r.payload::jsonb, '$.cause.** ? (@._tag == "Fail" || @._tag == "Die")')`
  )
  const statusFilter = (status: Status) => {
    switch (status) {
      case "pending":
        return sql`r.id IS NULL`
      case "succeeded":
        return sql`${exitTag} = 'Success'`
      case "cancelled":
        return sql`${exitTag} = 'Failure' AND NOT ${hasError}`
      case "failed":
        return sql`${exitTag} = 'Failure' AND ${hasError}`
    }
  }

  const find = (id: string) =>
    isId(id) ?
      Effect.map(
        sql<Row>`${select} WHERE ${pushes} AND m.id = CAST(${id} AS BIGINT)`,
        (rows) => Option.fromNullable(rows[0])
      ).pipe(Effect.mapError(unavailable)) :
      Effect.succeed(Option.none<Row>())

  const findByKey = (entityId: string, key: string) =>
    Effect.map(
      sql<Row>`${select} WHERE ${pushes} AND m.message_id = ${messageIdFor(entityId, key)}`,
      (rows) => Option.fromNullable(rows[0])
    ).pipe(Effect.mapError(unavailable))

  const found = (id: string) =>
    Effect.flatMap(find(id), (row) =>
      Option.isSome(row) ?
        Effect.succeed(row.value) :
        Effect.fail(new AdminRefused({ status: 404, code: "not_found", message: `no task with id ${id}` })))

  const list = Effect.fn("PushAdmin.list")(function*(options: {
    readonly status?: string
    readonly limit: number
    readonly after?: string
  }) {
    const conditions = [pushes]
    if (options.status !== undefined) conditions.push(statusFilter(options.status as Status))
    if (options.after !== undefined) {
      if (!isId(options.after)) {
        return yield* new AdminRefused({
          status: 400,
          code: "invalid_request",
          message: "after must be the `next` of an earlier page"
        })
      }
      conditions.push(sql`m.id < CAST(${options.after} AS BIGINT)`)
    }
    const rows = yield* sql<Row>`${select} WHERE ${sql.and(conditions)} ORDER BY m.id DESC LIMIT ${options.limit}`
      .pipe(Effect.mapError(unavailable))
    const last = rows.length === options.limit ? rows[rows.length - 1] : undefined
    return { tasks: rows.map(view), ...(last === undefined ? {} : { next: last.id }) }
  })

  const replay = Effect.fn("PushAdmin.replay")(function*(id: string) {
    const row = yield* found(id)
    const { status } = outcome(row.reply)
    if (status !== "failed" && status !== "cancelled") {
      return yield* new AdminRefused({
        status: 409,
        code: "conflict",
        message: `task ${id} is ${status}; only failed or cancelled pushes can be replayed`
      })
    }
    const payload = yield* decodePayload(parse(row.payload)).pipe(
      Effect.mapError((e) =>
        new AdminRefused({
          status: 409,
          code: "conflict",
          message: `task ${id} cannot be replayed: its stored push no longer decodes (${e.message.slice(0, 200)})`
        })
      )
    )
    const key = replayKey(payload.idempotencyKey)
    const earlier = yield* findByKey(row.entity_id, key)
    if (Option.isSome(earlier)) {
      return yield* new AdminRefused({
        status: 409,
        code: "conflict",
        message: `task ${id} was already replayed as task ${earlier.value.id} (${
          outcome(earlier.value.reply).status
        }); replay that one instead`
      })
    }
    // Stored before this returns; a concurrent replay of the same task stores nothing more (same primary key).
    yield* clientFor(row.entity_id).Deliver({ ...payload, idempotencyKey: key }, { discard: true }).pipe(
      Effect.catchAllCause((cause) => Effect.fail(unavailable(cause)))
    )
    const stored = yield* findByKey(row.entity_id, key)
    return Option.isSome(stored) ? view(stored.value) : yield* unavailable("the replay was not found after storing it")
  })

  const cancel = Effect.fn("PushAdmin.cancel")(function*(id: string) {
    const row = yield* found(id)
    const before = outcome(row.reply).status
    if (before !== "pending") {
      return yield* new AdminRefused({
        status: 409,
        code: "conflict",
        message: `task ${id} is ${before}; it cannot be cancelled`
      })
    }
    const envelope = new Envelope.Interrupt({
      id: yield* sharding.getSnowflake,
      address: EntityAddress.make({
        shardId: ShardId.ShardId.fromString(row.shard_id),
        entityType: PushEntity.type,
        entityId: EntityId.make(row.entity_id)
      }),
      requestId: Snowflake.Snowflake(row.id)
    })
    yield* sharding.sendOutgoing(new Message.OutgoingEnvelope({ envelope, rpc: deliverRpc }), false).pipe(
      Effect.catchAllCause((cause) => Effect.fail(unavailable(cause)))
    )
    // The owner records how the request ended; a push that finished first keeps its outcome.
    const statusNow = Effect.map(find(id), (r) => Option.isSome(r) ? outcome(r.value.reply).status : "pending")
    yield* Effect.repeat(statusNow, {
      until: (status) => status !== "pending",
      schedule: Schedule.spaced(Duration.millis(100)).pipe(Schedule.upTo(cancelWait))
    })
    const after = yield* statusNow
    if (after === "pending") return { done: false }
    if (after !== "cancelled") {
      return yield* new AdminRefused({
        status: 409,
        code: "conflict",
        message: `task ${id} was ${after} before the cancel reached it`
      })
    }
    return { done: true }
  })

  return TaskAdmin.of({
    describe: "cluster push admin",
    statuses,
    list,
    get: (id) => Effect.map(find(id), Option.map(view)),
    replay,
    cancel
  })
})

/** The admin routes over cluster pushes, on a small pool of their own (admin calls are rare). Needs `Sharding`. */
export const layer = (options: { readonly databaseUrl: Redacted.Redacted<string> }) =>
  Layer.effect(TaskAdmin, make).pipe(
    Layer.provide(Layer.orDie(PgClient.layer({ url: options.databaseUrl, maxConnections: 2 })))
  )
