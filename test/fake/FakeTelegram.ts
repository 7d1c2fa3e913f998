/**
 * A fake Telegram Bot API on 127.0.0.1 for tests. It speaks the real wire format — `POST /bot<token>/<method>`
 * with JSON, form or multipart bodies, answering `{ ok: true, result }` or
 * `{ ok: false, error_code, description, parameters: { retry_after } }` — records every call, serves files at
 * `/file/bot<token>/<path>`, holds getUpdates long polls, answers a second concurrent poller with 409 Conflict,
 * and fails calls on demand.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import * as Http from "node:http"

export interface UploadedFile {
  readonly name: string
  readonly type: string
  readonly size: number
}

export interface Call {
  readonly method: string
  readonly params: Record<string, unknown>
  readonly files: Record<string, UploadedFile>
}

export interface ScriptedError {
  readonly error_code: number
  readonly description: string
  readonly retry_after?: number
  /** Only calls matching this fail (default: every call of the method). */
  readonly when?: (params: Record<string, unknown>) => boolean
  /** How many calls fail (default 1). */
  readonly times?: number
}

export interface Options {
  readonly token?: string
  readonly username?: string
  /** Cap on how long a getUpdates call is held, in ms (default 1000; the `timeout` param is honoured below it). */
  readonly maxHoldMillis?: number
}

export interface FakeTelegram {
  readonly url: string
  readonly token: string
  readonly botId: number
  readonly username: string
  readonly calls: ReadonlyArray<Call>
  readonly callsOf: (method: string) => ReadonlyArray<Call>
  /** Waits (real time, at most `timeoutMillis`) until `method` was called at least `count` times. */
  readonly waitFor: (method: string, count?: number, timeoutMillis?: number) => Effect.Effect<ReadonlyArray<Call>>
  readonly fail: (method: string, error: ScriptedError) => void
  /** Queues updates for getUpdates; `update_id`s are assigned when missing. */
  readonly enqueueUpdate: (update: Record<string, unknown>) => number
  /** Serves a file; `declareLength: false` sends it chunked, without content-length. */
  readonly addFile: (
    fileId: string,
    bytes: Uint8Array,
    filePath?: string,
    options?: { readonly declareLength?: boolean }
  ) => void
  /** Requests for files, by path (to check what was downloaded). */
  readonly downloads: ReadonlyArray<string>
  /** Every URL the fake was asked for (to check where the token went). */
  readonly urls: ReadonlyArray<string>
  /** How many getUpdates calls were answered 409 Conflict because another poll was in progress. */
  readonly conflicts: () => number
  /** Whether a getUpdates call is being held open now. */
  readonly polling: () => boolean
  /** Waits (real time, at most `timeoutMillis`) until `condition` holds; checked on every call and poll change. */
  readonly waitUntil: (condition: () => boolean, timeoutMillis?: number) => Effect.Effect<void>
}

interface Held {
  readonly offset: number
  readonly respond: (updates: ReadonlyArray<Record<string, unknown>>) => void
}

const readBody = (request: Http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

const parseParams = async (
  request: Http.IncomingMessage,
  url: URL
): Promise<{ params: Record<string, unknown>; files: Record<string, UploadedFile> }> => {
  const params: Record<string, unknown> = Object.fromEntries(url.searchParams.entries())
  const files: Record<string, UploadedFile> = {}
  const body = await readBody(request)
  const type = request.headers["content-type"] ?? ""
  if (body.length === 0) return { params, files }
  if (type.includes("application/json")) return { params: { ...params, ...JSON.parse(body.toString("utf8")) }, files }
  if (type.includes("multipart/form-data") || type.includes("application/x-www-form-urlencoded")) {
    const form = await new Response(new Uint8Array(body), { headers: { "content-type": type } }).formData()
    const entries: Array<[string, FormDataEntryValue]> = []
    form.forEach((value, key) => entries.push([key, value]))
    for (const [key, value] of entries) {
      if (typeof value === "string") params[key] = value
      else files[key] = { name: value.name, type: value.type, size: value.size }
    }
  }
  return { params, files }
}

export const make = (options: Options = {}): Effect.Effect<FakeTelegram, never, Scope.Scope> =>
  Effect.gen(function*() {
    const botId = 7654321
    const token = options.token ?? `${botId}:AAH-fake-SECRET-token_0123456789abcdef`
    const username = options.username ?? "test_bot"
    const maxHold = options.maxHoldMillis ?? 1000
    const calls: Array<Call> = []
    const urls: Array<string> = []
    const downloads: Array<string> = []
    const scripted = new Map<string, Array<ScriptedError & { remaining: number }>>()
    const listeners = new Set<() => void>()
    const updates: Array<Record<string, unknown>> = []
    const files = new Map<string, { bytes: Uint8Array; path: string; declareLength: boolean }>()
    let held: Held | undefined
    let nextUpdateId = 1000
    let nextMessageId = 1
    let conflicts = 0

    const notify = () => {
      for (const listener of [...listeners]) listener()
    }

    const pending = (offset: number) => updates.filter((u) => (u.update_id as number) >= offset)

    const send = (response: Http.ServerResponse, status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" })
      response.end(JSON.stringify(body))
    }
    const error = (response: Http.ServerResponse, code: number, description: string, retryAfter?: number) =>
      send(response, code, {
        ok: false,
        error_code: code,
        description,
        ...(retryAfter === undefined ? {} : { parameters: { retry_after: retryAfter } })
      })
    const ok = (response: Http.ServerResponse, result: unknown) => send(response, 200, { ok: true, result })

    const messageResult = (params: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
      message_id: nextMessageId++,
      date: 1_700_000_000,
      chat: { id: Number(params.chat_id), type: "private" },
      ...extra
    })

    const handleMethod = (method: string, call: Call, response: Http.ServerResponse) => {
      const params = call.params
      const scripts = scripted.get(method) ?? []
      const script = scripts.find((s) => s.remaining > 0 && (s.when === undefined || s.when(params)))
      if (script !== undefined) {
        script.remaining--
        return error(response, script.error_code, script.description, script.retry_after)
      }
      switch (method) {
        case "getMe":
          return ok(response, { id: botId, is_bot: true, first_name: "Test Bot", username })
        case "sendMessage":
          return ok(response, messageResult(params, { text: params.text }))
        case "editMessageText":
          return ok(response, messageResult(params, { text: params.text }))
        case "sendPhoto":
          return ok(response, messageResult(params, { photo: [{ file_id: "sent", width: 1, height: 1 }] }))
        case "getFile": {
          const file = files.get(String(params.file_id))
          if (file === undefined) return error(response, 400, "Bad Request: invalid file_id")
          return ok(response, { file_id: params.file_id, file_size: file.bytes.byteLength, file_path: file.path })
        }
        case "getUpdates": {
          const offset = Number(params.offset ?? 0)
          for (let i = updates.length - 1; i >= 0; i--) {
            if ((updates[i]!.update_id as number) < offset) updates.splice(i, 1)
          }
          const ready = pending(offset)
          if (ready.length > 0) return ok(response, ready)
          if (held !== undefined) {
            conflicts++
            return error(
              response,
              409,
              "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
          }
          const timeoutMillis = Math.min(Number(params.timeout ?? 0) * 1000, maxHold)
          const entry: Held = {
            offset,
            respond: (result) => {
              clearTimeout(timer)
              if (held === entry) held = undefined
              if (!response.writableEnded) ok(response, result)
            }
          }
          const timer = setTimeout(() => entry.respond([]), timeoutMillis)
          held = entry
          response.on("close", () => {
            clearTimeout(timer)
            if (held === entry) held = undefined
            notify()
          })
          return
        }
        case "sendChatAction":
        case "answerCallbackQuery":
        case "setMyCommands":
        case "setWebhook":
        case "deleteWebhook":
        case "deleteMessage":
          return ok(response, true)
        default:
          return error(response, 404, "Not Found")
      }
    }

    const server = Http.createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1")
      urls.push(url.pathname + url.search)
      const fileMatch = /^\/file\/bot([^/]+)\/(.+)$/.exec(url.pathname)
      if (fileMatch !== null) {
        if (fileMatch[1] !== token) return error(response, 401, "Unauthorized")
        downloads.push(fileMatch[2]!)
        const file = [...files.values()].find((f) => f.path === fileMatch[2])
        if (file === undefined) return error(response, 404, "Not Found")
        response.writeHead(200, {
          "content-type": "application/octet-stream",
          ...(file.declareLength ? { "content-length": file.bytes.byteLength } : {})
        })
        response.end(Buffer.from(file.bytes))
        return
      }
      const match = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(url.pathname)
      if (match === null) return error(response, 404, "Not Found")
      if (match[1] !== token) return error(response, 401, "Unauthorized")
      const method = match[2]!
      parseParams(request, url).then(
        ({ files: uploaded, params }) => {
          const call: Call = { method, params, files: uploaded }
          calls.push(call)
          handleMethod(method, call, response)
          notify()
        },
        (e: unknown) => error(response, 400, `Bad Request: ${String(e)}`)
      )
    })

    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          held?.respond([])
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    const address = server.address() as { port: number }

    const callsOf = (method: string) => calls.filter((c) => c.method === method)

    const waitUntil = (
      condition: () => boolean,
      timeoutMillis = 5000,
      describe: () => string = () => "timed out waiting for a condition on the fake Bot API"
    ) =>
      Effect.async<void>((resume) => {
        const check = () => {
          if (condition()) {
            cleanup()
            resume(Effect.void)
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          resume(Effect.dieMessage(describe()))
        }, timeoutMillis)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
        return Effect.sync(cleanup)
      })

    const fake: FakeTelegram = {
      url: `http://127.0.0.1:${address.port}`,
      token,
      botId,
      username,
      calls,
      callsOf,
      downloads,
      urls,
      conflicts: () => conflicts,
      polling: () => held !== undefined,
      waitUntil,
      waitFor: (method, count = 1, timeoutMillis = 5000) =>
        Effect.map(
          waitUntil(
            () => callsOf(method).length >= count,
            timeoutMillis,
            () => `timed out waiting for ${count} ${method} call(s); saw ${callsOf(method).length}`
          ),
          () => callsOf(method)
        ),
      fail: (method, scripted_) => {
        const list = scripted.get(method) ?? []
        list.push({ ...scripted_, remaining: scripted_.times ?? 1 })
        scripted.set(method, list)
      },
      enqueueUpdate: (update) => {
        const id = typeof update.update_id === "number" ? update.update_id : nextUpdateId++
        updates.push({ ...update, update_id: id })
        if (held !== undefined) {
          const ready = pending(held.offset)
          if (ready.length > 0) held.respond(ready)
        }
        return id
      },
      addFile: (fileId, bytes, filePath, fileOptions) => {
        files.set(fileId, {
          bytes,
          path: filePath ?? `documents/${fileId}.bin`,
          declareLength: fileOptions?.declareLength ?? true
        })
      }
    }
    return fake
  })
