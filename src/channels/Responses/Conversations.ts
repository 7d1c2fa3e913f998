/**
 * The OpenAI Conversations API (`/conversations`, `/conversations/{id}/items`) and what a response created with
 * `conversation` does with it. See docs/RESPONSES.md, "Conversations".
 *
 * A conversation's items are the truth; its turns run in a session that mirrors them, so a turn need not resend
 * them and the session's history stays linear. The store remembers which session mirrors the items as of which
 * revision (`ConversationStore`): a turn whose conversation has a valid mirror claims it and runs there (the host
 * adds the history); otherwise it starts a fresh session whose input is the most recent items plus its own. When
 * the turn completes, its input and output items are appended, and its session becomes the mirror if nothing
 * changed the items meanwhile. Anything else (items added or deleted here, a failed or concurrent turn, a crash
 * mid-turn, a `previous_response_id` continuation of a conversation's response) leaves no valid mirror, and the
 * next turn starts fresh from the items.
 *
 * Conversation ids come from the CSPRNG and belong to the caller's user isolation key, as stored responses do: for
 * another user an id is exactly as missing as an unknown one (404).
 */
import { Effect, Either, Option } from "effect"
import type { ChannelContext, ConversationItem, Route, RouteInput, StoredConversation } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import { issueId } from "../../domain/Ids.js"
import type { Message } from "../../domain/Message.js"
import * as Time from "../../domain/Time.js"
import { json } from "../../http/HttpBody.js"
import { readJsonObject } from "../../http/JsonObject.js"
import { sameUser, userScopedKey } from "../../http/UserScope.js"
import type { Sealer } from "./Compaction.js"
import type { InputItem } from "./Request.js"
import { parseInput } from "./Request.js"
import type { Refusal } from "./Wire.js"
import { errorResponse, listQuery } from "./Wire.js"

type Obj = Record<string, unknown>

/** Most items one create (initial items) or one items create may carry, as OpenAI allows. */
export const MAX_ITEMS_PER_REQUEST = 20
/** Most metadata pairs, and their key and value lengths, as OpenAI allows. */
const MAX_METADATA_PAIRS = 16
const MAX_METADATA_KEY = 64
const MAX_METADATA_VALUE = 512

/** `incomplete_details.reason`s of turns the host stopped: their output is not the agent's whole answer. */
const STOPPED_REASONS: ReadonlySet<string> = new Set(["server_shutdown", "server_restarted"])

export interface Options {
  readonly ctx: ChannelContext
  readonly name: string
  readonly authorized: (request: RouteInput["request"]) => boolean
  readonly unauthorized: ReturnType<typeof errorResponse>
  readonly sealer: Sealer
  /** Most items a conversation holds. */
  readonly maxItems: number
  /** Most recent items a turn that starts a fresh session is given. */
  readonly contextItems: number
  /** The metadata key marking a response whose reply went elsewhere (its output is empty). */
  readonly outOfBandKey: string
}

/** A response's turn in a conversation, from `begin` to `end`. */
export interface ConversationTurn {
  readonly id: string
  readonly sessionKey: string
  /** A session minted for this turn: `history` holds the conversation's items for it. */
  readonly fresh: boolean
  readonly revision: number
  readonly history: ReadonlyArray<Message>
}

const kindOf = (type: string): string => {
  switch (type) {
    case "function_call":
      return "fc"
    case "function_call_output":
      return "fco"
    case "reasoning":
      return "rs"
    case "compaction":
      return "cmp"
    default:
      return "msg"
  }
}

/**
 * Input items as the conversation keeps them: ids the host minted from `base` (CSPRNG) stay, an id the caller
 * chose is replaced by one minted from `base`, so item ids are unique within a conversation.
 */
export const conversationCopy = (
  items: ReadonlyArray<InputItem>,
  base: string,
  minted: (id: string) => boolean
): ReadonlyArray<ConversationItem> =>
  items.map((item, n) => minted(item.id) ? item : { ...item, id: `${kindOf(item.type)}_${base}_c${n}` })

const conversationJson = (conversation: StoredConversation) => ({
  id: conversation.id,
  object: "conversation",
  created_at: Time.toEpochSeconds(conversation.createdAt),
  metadata: conversation.metadata
})

/** `metadata` as OpenAI bounds it (at most 16 string pairs, keys ≤ 64, values ≤ 512 characters); null is none. */
const parseMetadata = (raw: unknown): Record<string, string> | Refusal => {
  const invalid = (message: string): Refusal => ({ status: 400, code: "invalid_request", message, param: "metadata" })
  if (raw === undefined || raw === null) return {}
  if (typeof raw !== "object" || Array.isArray(raw)) return invalid("metadata must be an object of strings")
  const entries = Object.entries(raw as Obj)
  if (entries.length > MAX_METADATA_PAIRS) return invalid(`metadata has at most ${MAX_METADATA_PAIRS} keys`)
  const out: Record<string, string> = {}
  for (const [key, value] of entries) {
    if (key.length > MAX_METADATA_KEY) return invalid(`metadata keys are at most ${MAX_METADATA_KEY} characters`)
    if (typeof value !== "string") return invalid(`metadata.${key.slice(0, 64)} must be a string`)
    if (value.length > MAX_METADATA_VALUE) {
      return invalid(`metadata values are at most ${MAX_METADATA_VALUE} characters`)
    }
    out[key] = value
  }
  return out
}

const isRefusal = (u: unknown): u is Refusal =>
  typeof u === "object" && u !== null && typeof (u as Refusal).status === "number" && "code" in u

export const make = (options: Options) => {
  const { authorized, ctx, name, sealer, unauthorized } = options
  const store = ctx.conversations

  const refuse = (refusal: Refusal) => errorResponse(refusal.status, refusal.code, refusal.message, refusal.param)
  const notFound = (id: string) =>
    errorResponse(404, "conversation_not_found", `No conversation found with id '${id}'.`)
  const itemNotFound = (id: string, itemId: string) =>
    errorResponse(404, "item_not_found", `No item found with id '${itemId}' in conversation '${id}'.`)
  const full = (id: string, count: number, adding: number): Refusal => ({
    status: 400,
    code: "conversation_too_long",
    message: `conversation '${id}' holds ${count} items and may hold at most ${options.maxItems}: adding ${adding} ` +
      `more is refused; delete items or start a new conversation`,
    param: "conversation"
  })

  /** The conversation, if it belongs to the caller (another user's id is as missing as an unknown one). */
  const getOwn = (id: string, user: string | undefined) =>
    Effect.map(store.get(id), Option.filter((c) => sameUser(c.userKey, user)))

  /** Items of a request (`items`), validated and normalised as input items, ids minted for them. */
  const parseItems = (raw: unknown, user: string | undefined, required: boolean) =>
    Effect.gen(function*() {
      if (raw === undefined || raw === null) {
        return required ?
          Either.left<Refusal>({
            status: 400,
            code: "missing_required_parameter",
            message: "items is required (a list of items)",
            param: "items"
          }) :
          Either.right<ReadonlyArray<ConversationItem>>([])
      }
      if (!Array.isArray(raw)) {
        return Either.left<Refusal>({
          status: 400,
          code: "invalid_request",
          message: "items must be a list of items",
          param: "items"
        })
      }
      if (raw.length > MAX_ITEMS_PER_REQUEST || (required && raw.length === 0)) {
        return Either.left<Refusal>({
          status: 400,
          code: "invalid_request",
          message: `items must hold 1 to ${MAX_ITEMS_PER_REQUEST} items (got ${raw.length})`,
          param: "items"
        })
      }
      if (raw.length === 0) return Either.right<ReadonlyArray<ConversationItem>>([])
      const base = yield* issueId()
      const parsed = parseInput(raw, (kind, n) => `${kind}_${base}_${n}`, (content) => sealer.open(content, user))
      if ("message" in parsed) {
        return Either.left<Refusal>({
          status: 400,
          code: "invalid_request",
          message: parsed.message.replace(/^input/, "items"),
          param: parsed.param === null ? "items" : parsed.param.replace(/^input/, "items")
        })
      }
      return Either.right(conversationCopy(parsed.items, base, (id) => id.includes(`_${base}_`)))
    })

  const readBody = (input: RouteInput) =>
    Effect.map(
      Effect.either(readJsonObject(input.request, ctx.settings)),
      Either.mapLeft((problem): Refusal => ({
        status: problem.status,
        code: problem.type,
        message: problem.message,
        param: null
      }))
    )

  const guarded = (f: (input: RouteInput, id: string) => ReturnType<Route["handler"]>) =>
    ChannelModule.handler((input) =>
      authorized(input.request) ? f(input, input.params["id"] ?? "") : Effect.succeed(unauthorized)
    )

  const create = ChannelModule.handler((input) =>
    Effect.gen(function*() {
      if (!authorized(input.request)) return unauthorized
      const body = yield* readBody(input)
      if (Either.isLeft(body)) return refuse(body.left)
      const metadata = parseMetadata(body.right["metadata"])
      if (isRefusal(metadata)) return refuse(metadata)
      const user = input.isolation.user
      const items = yield* parseItems(body.right["items"], user, false)
      if (Either.isLeft(items)) return refuse(items.left)
      const created = yield* store.create({
        id: yield* issueId("conv_"),
        userKey: user,
        metadata,
        createdAt: yield* Time.now,
        items: items.right
      })
      return json(conversationJson(created))
    })
  )

  const retrieve = guarded((input, id) =>
    Effect.map(
      getOwn(id, input.isolation.user),
      Option.match({ onNone: () => notFound(id), onSome: (c) => json(conversationJson(c)) })
    )
  )

  const update = guarded((input, id) =>
    Effect.gen(function*() {
      const body = yield* readBody(input)
      if (Either.isLeft(body)) return refuse(body.left)
      if (!("metadata" in body.right)) {
        return errorResponse(400, "missing_required_parameter", "metadata is required (an object, or null)", "metadata")
      }
      const metadata = parseMetadata(body.right["metadata"])
      if (isRefusal(metadata)) return refuse(metadata)
      if (Option.isNone(yield* getOwn(id, input.isolation.user))) return notFound(id)
      const updated = yield* store.setMetadata(id, metadata, yield* Time.now)
      return Option.match(updated, { onNone: () => notFound(id), onSome: (c) => json(conversationJson(c)) })
    })
  )

  const remove = guarded((input, id) =>
    Effect.gen(function*() {
      if (Option.isNone(yield* getOwn(id, input.isolation.user))) return notFound(id)
      if (!(yield* store.delete(id))) return notFound(id)
      return json({ id, object: "conversation.deleted", deleted: true })
    })
  )

  const listItems = guarded((input, id) =>
    Effect.gen(function*() {
      if (Option.isNone(yield* getOwn(id, input.isolation.user))) return notFound(id)
      const parsed = listQuery(input.query)
      if (Either.isLeft(parsed)) return parsed.left
      const { after, limit, order } = parsed.right
      const page = yield* store.listItems(id, { limit, order, after: after ?? undefined })
      if (page._tag === "AfterNotFound") {
        return errorResponse(400, "invalid_request", `no item with id '${after}' in this conversation`, "after")
      }
      const data = page.items
      return json({
        object: "list",
        data,
        first_id: data[0]?.id ?? null,
        last_id: data[data.length - 1]?.id ?? null,
        has_more: page.hasMore
      })
    })
  )

  const addItems = guarded((input, id) =>
    Effect.gen(function*() {
      const body = yield* readBody(input)
      if (Either.isLeft(body)) return refuse(body.left)
      const user = input.isolation.user
      if (Option.isNone(yield* getOwn(id, user))) return notFound(id)
      const items = yield* parseItems(body.right["items"], user, true)
      if (Either.isLeft(items)) return refuse(items.left)
      const appended = yield* store.appendItems(id, items.right, { at: yield* Time.now, maxItems: options.maxItems })
      if (appended._tag === "Missing") return notFound(id)
      if (appended._tag === "Full") return refuse(full(id, appended.itemCount, items.right.length))
      const data = items.right
      return json({
        object: "list",
        data,
        first_id: data[0]?.id ?? null,
        last_id: data[data.length - 1]?.id ?? null,
        has_more: false
      })
    })
  )

  const getItem = guarded((input, id) =>
    Effect.gen(function*() {
      const itemId = input.params["item_id"] ?? ""
      if (Option.isNone(yield* getOwn(id, input.isolation.user))) return notFound(id)
      return Option.match(yield* store.getItem(id, itemId), {
        onNone: () => itemNotFound(id, itemId),
        onSome: (item) => json(item)
      })
    })
  )

  const deleteItem = guarded((input, id) =>
    Effect.gen(function*() {
      const itemId = input.params["item_id"] ?? ""
      if (Option.isNone(yield* getOwn(id, input.isolation.user))) return notFound(id)
      return Option.match(yield* store.deleteItem(id, itemId, yield* Time.now), {
        onNone: () => itemNotFound(id, itemId),
        onSome: (c) => json(conversationJson(c))
      })
    })
  )

  const routes: ReadonlyArray<Route> = [
    { method: "POST", path: "/conversations", handler: create, body: "json" },
    { method: "GET", path: "/conversations/:id", handler: retrieve },
    { method: "POST", path: "/conversations/:id", handler: update, body: "json" },
    { method: "DELETE", path: "/conversations/:id", handler: remove },
    { method: "GET", path: "/conversations/:id/items", handler: listItems },
    { method: "POST", path: "/conversations/:id/items", handler: addItems, body: "json" },
    { method: "GET", path: "/conversations/:id/items/:item_id", handler: getItem },
    { method: "DELETE", path: "/conversations/:id/items/:item_id", handler: deleteItem }
  ]

  /**
   * Starts a response's turn in conversation `ref` (see the module comment), adding `adding` input items; a Left
   * is the refusal (404 for a conversation the caller does not have, 400 past the item bound).
   */
  const begin = (
    ref: string | { readonly id: string },
    user: string | undefined,
    adding: number
  ): Effect.Effect<Either.Either<ConversationTurn, Refusal>> =>
    Effect.gen(function*() {
      const id = typeof ref === "string" ? ref : ref.id
      const found = yield* getOwn(id, user)
      if (Option.isNone(found)) {
        return Either.left<Refusal>({
          status: 404,
          code: "conversation_not_found",
          message: `No conversation found with id '${id}'.`,
          param: "conversation"
        })
      }
      const conversation = found.value
      if (conversation.itemCount + adding > options.maxItems) {
        return Either.left(full(id, conversation.itemCount, adding))
      }
      const { mirror, revision } = conversation
      if (mirror !== undefined && mirror.revision === revision) {
        if (yield* store.claimMirror(id, mirror.sessionKey, revision)) {
          return Either.right<ConversationTurn>({
            id,
            sessionKey: mirror.sessionKey,
            fresh: false,
            revision,
            history: []
          })
        }
      }
      // The key names the conversation (see `release`); the rest is from the CSPRNG, so nothing is stored under it.
      const sessionKey = userScopedKey(user, `${name}:conv:${id}:${yield* issueId()}`)
      const items = yield* store.recentItems(id, options.contextItems)
      if (items.length === 0) {
        return Either.right<ConversationTurn>({ id, sessionKey, fresh: true, revision, history: [] })
      }
      const parsed = parseInput(items, (kind, n) => `${kind}_${n}`, (content) => sealer.open(content, user))
      if ("message" in parsed) {
        return Either.left<Refusal>({
          status: 400,
          code: "invalid_request",
          message: `conversation '${id}' holds an item this host cannot use (${parsed.message}); delete it`,
          param: "conversation"
        })
      }
      return Either.right<ConversationTurn>({ id, sessionKey, fresh: true, revision, history: parsed.messages })
    })

  const keyPattern = new RegExp(`(?:^|:)${name}:conv:(conv_[0-9a-f]{32}):[0-9a-f]{32}$`)

  /**
   * A turn outside the conversation is about to write to `sessionKey` (a `previous_response_id` continuation of a
   * conversation's response): if that session mirrors its conversation, it no longer will.
   */
  const release = (sessionKey: string): Effect.Effect<void> => {
    const match = keyPattern.exec(sessionKey)
    return match === null ? Effect.void : store.dropMirror(match[1]!, sessionKey)
  }

  /**
   * Ends a conversation's turn with its final response resource: a turn that completed appends its input items
   * (`input`, as `conversationCopy` made them) and output items, and its session mirrors the conversation if
   * nothing else changed it. A turn that did not complete appends nothing, and its session mirrors nothing.
   */
  const end = (turn: ConversationTurn, input: ReadonlyArray<ConversationItem>, final: Obj): Effect.Effect<void> =>
    Effect.gen(function*() {
      const status = final["status"]
      const reason = (final["incomplete_details"] as { readonly reason?: unknown } | null | undefined)?.reason
      const answered = status === "completed" ||
        (status === "incomplete" && !(typeof reason === "string" && STOPPED_REASONS.has(reason)))
      if (!answered) return
      const output = Array.isArray(final["output"]) ? (final["output"] as Array<ConversationItem>) : []
      const metadata = final["metadata"] as Obj | null | undefined
      // A reply that went to other channels is in the session's history but not in `output`: no mirror then.
      const mirrored = metadata?.[options.outOfBandKey] === undefined
      yield* store.appendItems(turn.id, [...input, ...output], {
        at: yield* Time.now,
        ...(mirrored ? { mirror: { sessionKey: turn.sessionKey, ifRevision: turn.revision } } : {})
      })
    })

  return { routes, begin, release, end }
}
