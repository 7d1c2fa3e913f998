/**
 * The SDK's `TaskStore` on the host's durable key/value state (ChannelState cursors), so a task can be read
 * back (GetTask, ListTasks) after a restart. Tasks are kept per owner (the caller scope and tenant): an index
 * entry (`a2a:<owner>:index`, newest last) and one slot per task (`a2a:<owner>:<slot>`). An owner keeps at most
 * `maxTasks` tasks; a new task past that takes the oldest task's slot, so the keys an owner uses are bounded.
 */
import type { ListTasksRequest, ListTasksResponse } from "@a2a-js/sdk"
import { Task } from "@a2a-js/sdk"
import type { ServerCallContext, TaskStore } from "@a2a-js/sdk/server"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import type { ChannelState } from "../../core/Channel.js"

/** The key in `ServerCallContext.state` holding the caller scope (see CallerScope). */
export const callerStateKey = "agent-host.caller"

interface IndexEntry {
  readonly id: string
  readonly slot: number
}

export interface Options {
  readonly state: ChannelState
  /** Most tasks kept per owner. */
  readonly maxTasks: number
  /** Runs the store's effects for the SDK's promise-based interface. */
  readonly runPromise: <A>(effect: Effect.Effect<A>) => Promise<A>
  /** Serializes index updates (one owner's concurrent saves must not lose each other's entries). */
  readonly lock: <A>(effect: Effect.Effect<A>) => Effect.Effect<A>
}

/** The owner a call's tasks are stored under: tenant and caller, digested (fixed length, no separators). */
export const ownerOf = (context: ServerCallContext): string => {
  const caller = context.state.get(callerStateKey)
  const scope = `${context.tenant ?? ""}\u0000${typeof caller === "string" ? caller : ""}`
  return createHash("sha256").update(scope).digest("base64url").slice(0, 22)
}

const parseIndex = (raw: Option.Option<string>): Array<IndexEntry> => {
  if (Option.isNone(raw)) return []
  try {
    const parsed = JSON.parse(raw.value) as unknown
    return Array.isArray(parsed) ? (parsed as Array<IndexEntry>) : []
  } catch {
    return []
  }
}

const parseTask = (raw: Option.Option<string>, id: string): Task | undefined => {
  if (Option.isNone(raw)) return undefined
  try {
    const task = Task.fromJSON(JSON.parse(raw.value))
    // A slot reused by a newer task no longer holds `id`.
    return task.id === id ? task : undefined
  } catch {
    return undefined
  }
}

const encodeToken = (timestamp: string, id: string) =>
  Buffer.from(JSON.stringify([timestamp, id])).toString("base64url")

const decodeToken = (token: string): readonly [string, string] | undefined => {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown
    return Array.isArray(parsed) && typeof parsed[0] === "string" && typeof parsed[1] === "string" ?
      [parsed[0], parsed[1]] :
      undefined
  } catch {
    return undefined
  }
}

export const make = (options: Options): TaskStore => {
  const { lock, maxTasks, runPromise, state } = options
  const indexKey = (owner: string) => `a2a:${owner}:index`
  const slotKey = (owner: string, slot: number) => `a2a:${owner}:${slot}`

  const loadIndex = (owner: string) => Effect.map(state.getCursor(indexKey(owner)), parseIndex)

  const load = (id: string, owner: string) =>
    Effect.gen(function*() {
      const entry = (yield* loadIndex(owner)).find((e) => e.id === id)
      if (entry === undefined) return undefined
      return parseTask(yield* state.getCursor(slotKey(owner, entry.slot)), id)
    })

  const save = (task: Task, owner: string) =>
    lock(Effect.gen(function*() {
      const index = yield* loadIndex(owner)
      const at = index.findIndex((e) => e.id === task.id)
      let slot: number
      if (at !== -1) {
        slot = index[at]!.slot
        index.splice(at, 1)
      } else if (index.length >= maxTasks) {
        slot = index.shift()!.slot
      } else {
        const used = new Set(index.map((e) => e.slot))
        slot = 0
        while (used.has(slot)) slot++
      }
      index.push({ id: task.id, slot })
      yield* state.setCursor(slotKey(owner, slot), JSON.stringify(Task.toJSON(task)))
      yield* state.setCursor(indexKey(owner), JSON.stringify(index))
    }))

  const list = (params: ListTasksRequest, owner: string) =>
    Effect.gen(function*() {
      const index = yield* loadIndex(owner)
      let tasks: Array<Task> = []
      for (const entry of index) {
        const task = parseTask(yield* state.getCursor(slotKey(owner, entry.slot)), entry.id)
        if (task !== undefined) tasks.push(task)
      }
      if (params.contextId) tasks = tasks.filter((t) => t.contextId === params.contextId)
      if (params.status !== undefined && params.status !== 0) {
        tasks = tasks.filter((t) => t.status?.state === params.status)
      }
      if (params.statusTimestampAfter) {
        const after = Date.parse(params.statusTimestampAfter)
        tasks = tasks.filter((t) => t.status?.timestamp !== undefined && Date.parse(t.status.timestamp) > after)
      }
      // Newest first, as the SDK's in-memory store orders them.
      tasks.sort((a, b) => {
        const ta = a.status?.timestamp ?? ""
        const tb = b.status?.timestamp ?? ""
        return tb !== ta ? tb.localeCompare(ta) : b.id.localeCompare(a.id)
      })
      const totalSize = tasks.length
      if (params.pageToken) {
        const cursor = decodeToken(params.pageToken)
        const at = cursor === undefined ?
          -1 :
          tasks.findIndex((t) => (t.status?.timestamp ?? "") === cursor[0] && t.id === cursor[1])
        tasks = at === -1 ? [] : tasks.slice(at + 1)
      }
      const pageSize = params.pageSize ?? 50
      const page = tasks.slice(0, pageSize).map((t) => params.includeArtifacts === true ? t : { ...t, artifacts: [] })
      const last = page.at(-1)
      const response: ListTasksResponse = {
        tasks: page,
        nextPageToken: last !== undefined && tasks.length > page.length ?
          encodeToken(last.status?.timestamp ?? "", last.id) :
          "",
        pageSize,
        totalSize
      }
      return response
    })

  return {
    load: (id, context) => runPromise(load(id, ownerOf(context))),
    save: (task, context) => runPromise(save(task, ownerOf(context))),
    list: (params, context) => runPromise(list(params, ownerOf(context)))
  }
}
