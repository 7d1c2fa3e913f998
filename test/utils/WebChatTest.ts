/**
 * Helpers for the web chat tests: a `relay` channel that sends a turn's reply to a web chat identity (so a
 * push arrives from another channel), an inline push scheduler (pushes land before the sending request
 * returns), and an SSE reader over fetch.
 */
import { Effect, Layer, Option } from "effect"
import { layerAllowAll } from "../../src/auth/Authorizer.js"
import * as WebChat from "../../src/channels/WebChat/WebChat.js"
import * as AgentHost from "../../src/core/AgentHost.js"
import type { Channel } from "../../src/core/Channel.js"
import * as ChannelModule from "../../src/core/Channel.js"
import * as Channels from "../../src/core/Channels.js"
import type { HostConfigShape } from "../../src/core/HostConfig.js"
import * as HostConfig from "../../src/core/HostConfig.js"
import * as Sessions from "../../src/core/Sessions.js"
import type { Target } from "../../src/core/Target.js"
import * as Turns from "../../src/core/Turns.js"
import * as Delivery from "../../src/delivery/Delivery.js"
import type { ChannelRequest } from "../../src/domain/ChannelRequest.js"
import type { ChannelIdentity } from "../../src/domain/Identity.js"
import { ResponseTargets } from "../../src/domain/Identity.js"
import type { IsolationKey } from "../../src/domain/Ids.js"
import { userMessage } from "../../src/domain/Message.js"
import { errorJson, json, readJson } from "../../src/http/HttpBody.js"
import * as StateStore from "../../src/state/StateStore.js"
import type { FakeIdp } from "../fake/FakeIdp.js"
import type { FakeTelegram } from "../fake/FakeTelegram.js"
import * as LinkHarness from "../fake/LinkHarness.js"
import { webhookChannel } from "../fake/TelegramHarness.js"

/**
 * `POST /relay { to, message, echo? }`: runs a turn on `relay:1` and sends the reply to `webchat:<to>`. Each
 * turn has its own response id, which the push idempotency key is built from.
 */
export const relay: Channel = ChannelModule.make("relay", (ctx) => {
  let turns = 0
  return Effect.succeed({
    path: "/relay",
    routes: [{
      method: "POST",
      path: "/",
      handler: ({ request }) =>
        Effect.gen(function*() {
          const body = (yield* readJson(request, 1024 * 1024).pipe(Effect.orDie)) as {
            readonly to: string
            readonly message: string
            readonly echo?: boolean
          }
          const turn: ChannelRequest = {
            channel: "relay",
            operation: "message.create",
            input: [userMessage(body.message)],
            session: { isolationKey: "relay:1" as IsolationKey },
            identity: { channel: "relay", nativeId: "1" } as ChannelIdentity,
            attributes: { responseId: `resp_relay_${++turns}` },
            stream: false
          }
          const result = yield* ctx.run(turn, body).pipe(Effect.either)
          if (result._tag === "Left") return errorJson(500, "relay_failed", result.left.message)
          const shaped = result.right.originating
          return json({ originating: Option.isSome(shaped) })
        })
    }],
    // Naming another user's browser is a permission: trusted code (this run hook) sets the target, not the caller.
    hooks: {
      run: (request, raw) =>
        Effect.succeed({
          ...request,
          responseTarget: ResponseTargets.channels([`webchat:${(raw as { to: string }).to}`], {
            echoInput: (raw as { echo?: boolean }).echo === true
          })
        })
    }
  })
})

/** Runs each push inline, echo first, so it has landed when the turn returns. */
export const layerPushInline: Layer.Layer<Delivery.PushScheduler, never, Channels.Channels> = Layer.effect(
  Delivery.PushScheduler,
  Effect.map(Channels.Channels, (channels) =>
    Delivery.PushScheduler.of({
      schedule: (job) =>
        Effect.gen(function*() {
          const push = channels.unsafeGet(job.destination.channel)?.contribution.push
          if (push === undefined) return
          const options = { idempotencyKey: job.idempotencyKey }
          if (job.echo !== undefined) {
            yield* Effect.ignore(push.push(job.destination.identity, job.echo, { ...options, isEcho: true }))
          }
          yield* Effect.ignore(push.push(job.destination.identity, job.result, { ...options, isEcho: false }))
        })
    }))
)

/** The host with inline pushes, memory state and the given target. */
export const layerInlinePush = (options: {
  readonly channels: ReadonlyArray<Channel>
  readonly target: Layer.Layer<Target>
  readonly settings?: Partial<HostConfigShape>
}) => {
  const core = Turns.layer.pipe(
    Layer.provideMerge(Delivery.layer),
    Layer.provideMerge(layerPushInline),
    Layer.provideMerge(Sessions.layerConfig),
    Layer.provideMerge(Channels.layer),
    Layer.provideMerge(layerAllowAll)
  )
  return AgentHost.layer({ channels: options.channels }).pipe(
    Layer.provideMerge(core),
    Layer.provide(options.target),
    Layer.provide(StateStore.layerMemory),
    Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1", ...options.settings }))
  )
}

export interface Frame {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: string
}

export interface SseReader {
  readonly status: number
  readonly headers: Headers
  /** Waits for the next `count` data frames (comments are skipped). */
  readonly take: (count: number) => Effect.Effect<ReadonlyArray<Frame>>
  /** Waits until a comment containing `text` has been read. */
  readonly comment: (text: string) => Effect.Effect<void>
}

const waitLimitMillis = 10_000

/** Opens an SSE response (GET, or POST with `body`) and reads it frame by frame; closed with the scope. */
export const openSse = (
  url: string,
  init: { readonly headers?: Record<string, string>; readonly body?: string } = {}
) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const controller = new AbortController()
      const response = await fetch(url, {
        method: init.body === undefined ? "GET" : "POST",
        ...(init.body === undefined ? {} : { body: init.body }),
        headers: { accept: "text/event-stream", ...init.headers },
        signal: controller.signal
      })
      return { controller, response }
    }),
    ({ controller }) => Effect.sync(() => controller.abort())
  ).pipe(Effect.map(({ response }): SseReader => {
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    const frames: Array<Frame> = []
    const comments: Array<string> = []
    let ended = false
    const pull = async () => {
      const chunk = await reader.read()
      if (chunk.done) {
        ended = true
        return
      }
      buffer += decoder.decode(chunk.value, { stream: true })
      const parts = buffer.split("\n\n")
      buffer = parts.pop()!
      for (const part of parts) {
        let id: string | undefined
        let event: string | undefined
        const data: Array<string> = []
        for (const line of part.split("\n")) {
          if (line.startsWith(":")) comments.push(line.slice(1).trim())
          else if (line.startsWith("id: ")) id = line.slice(4)
          else if (line.startsWith("event: ")) event = line.slice(7)
          else if (line.startsWith("data: ")) data.push(line.slice(6))
        }
        if (data.length > 0) frames.push({ id, event, data: data.join("\n") })
      }
    }
    const until = (done: () => boolean, what: string) =>
      Effect.promise(async () => {
        const deadline = performance.now() + waitLimitMillis
        while (!done()) {
          if (ended) throw new Error(`the stream ended while waiting for ${what}`)
          let timer: ReturnType<typeof setTimeout> | undefined
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), deadline - performance.now())
          })
          try {
            await Promise.race([pull(), timeout])
          } finally {
            clearTimeout(timer)
          }
        }
      })
    return {
      status: response.status,
      headers: response.headers,
      take: (count) =>
        Effect.map(until(() => frames.length >= count, `${count} frame(s)`), () => frames.splice(0, count)),
      comment: (text) => until(() => comments.some((c) => c.includes(text)), `comment "${text}"`)
    }
  }))

export const request = (
  url: string,
  init: { readonly method?: string; readonly body?: string; readonly headers?: Record<string, string> } = {}
) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      ...(init.body === undefined ? {} : { body: init.body }),
      headers: { "content-type": "application/json", ...init.headers }
    })
    const text = await response.text()
    let body: any = undefined
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    return { status: response.status, headers: response.headers, text, body }
  })

/**
 * A person's two chats on one host: Telegram (by webhook on `fake`) and the web chat, both answering every identity
 * linked to the person, linking through `idp` with linked sessions (one conversation everywhere), memory state.
 */
export const startTelegramAndWebChat = (
  idp: FakeIdp,
  fake: FakeTelegram,
  settings: Partial<HostConfigShape> = {}
) =>
  Effect.flatMap(LinkHarness.freePort, (port) =>
    LinkHarness.start({
      idp,
      channels: [
        webhookChannel(fake, { hooks: LinkHarness.allLinked }),
        WebChat.make({ hooks: LinkHarness.allLinked })
      ],
      authorization: {},
      store: StateStore.layerMemory,
      port,
      oidc: { linkSessions: true },
      settings
    }))
