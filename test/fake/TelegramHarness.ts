/**
 * A real host with the Telegram channel pointed at a FakeTelegram, for the Telegram tests.
 */
import { FetchHttpClient } from "@effect/platform"
import { Context, Effect, Layer } from "effect"
import type { AuthorizerShape } from "../../src/auth/Authorizer.js"
import { Authorizer } from "../../src/auth/Authorizer.js"
import type { Options } from "../../src/channels/Telegram/Telegram.js"
import * as Telegram from "../../src/channels/Telegram/Telegram.js"
import * as Agent from "../../src/core/Agent.js"
import type { AgentHostShape } from "../../src/core/AgentHost.js"
import { AgentHost } from "../../src/core/AgentHost.js"
import * as AgentHostModule from "../../src/core/AgentHost.js"
import * as Channels from "../../src/core/Channels.js"
import * as HostConfig from "../../src/core/HostConfig.js"
import * as Sessions from "../../src/core/Sessions.js"
import type { Turn } from "../../src/core/Target.js"
import * as Turns from "../../src/core/Turns.js"
import * as Delivery from "../../src/delivery/Delivery.js"
import { textOf } from "../../src/domain/Content.js"
import { assistantMessage } from "../../src/domain/Message.js"
import * as StateStoreModule from "../../src/state/StateStore.js"
import type * as StateStore from "../../src/state/StateStore.js"
import * as TestHost from "../utils/TestHost.js"
import type { FakeTelegram } from "./FakeTelegram.js"
import * as Fake from "./FakeTelegram.js"

export const SECRET = "s3cret-Token_1"

/** The Telegram channel on `fake`, by webhook with `SECRET`, not streaming. */
export const webhookChannel = (fake: FakeTelegram, options: Partial<Options> = {}) =>
  Telegram.make({
    token: fake.token,
    apiBase: fake.url,
    stream: false,
    webhookUrl: "https://bot.example.test/telegram/webhook",
    secretToken: SECRET,
    ...options
  })

/** The URL of the last sign-in button sent to `chatId`. */
export const signInButtonUrl = (fake: FakeTelegram, chatId: number): string | undefined => {
  for (const call of [...fake.callsOf("sendMessage")].reverse()) {
    if (Number(call.params.chat_id) !== chatId) continue
    const markup = call.params.reply_markup as
      | { inline_keyboard: ReadonlyArray<ReadonlyArray<{ url?: string }>> }
      | undefined
    const url = markup?.inline_keyboard[0]?.[0]?.url
    if (url !== undefined) return url
  }
  return undefined
}

export interface Harness {
  readonly fake: FakeTelegram
  readonly host: AgentHostShape
  /** Every turn the agent received. */
  readonly turns: Array<Turn>
  /** Posts to the webhook with the secret header (none when `secret` is null). */
  readonly post: (
    body: unknown,
    secret?: string | null
  ) => Effect.Effect<{ status: number; body: string; retryAfter: string | null }>
}

const lastUserText = (turn: Turn) => {
  const user = turn.input.filter((m) => m.role === "user")
  return textOf(user[user.length - 1]?.contents ?? [])
}

/** Replies `echo: <text> (history <n>)` and records the turn. */
export const echoAgent = (turns: Array<Turn>) =>
  Agent.make({
    name: "echo",
    run: (turn) =>
      Effect.sync(() => {
        turns.push(turn)
        return { messages: [assistantMessage(`echo: ${lastUserText(turn)} (history ${turn.history.length})`)] }
      })
  })

export interface StartOptions {
  readonly options?: Partial<Options>
  readonly agent?: (turns: Array<Turn>) => Agent.Agent
  readonly store?: Layer.Layer<StateStore.StateStore>
  readonly fake?: FakeTelegram
  readonly webhook?: boolean
  /** Replaces the allow-all authorizer. */
  readonly authorizer?: AuthorizerShape
}

export const post = (url: string, body: unknown, secret: string | null) =>
  Effect.promise(() =>
    fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(secret === null ? {} : { "x-telegram-bot-api-secret-token": secret })
      },
      body: typeof body === "string" ? body : JSON.stringify(body)
    }).then(async (r) => ({ status: r.status, body: await r.text(), retryAfter: r.headers.get("retry-after") }))
  )

export const start = (startOptions: StartOptions = {}) =>
  Effect.gen(function*() {
    const fake = startOptions.fake ?? (yield* Fake.make())
    const turns: Array<Turn> = []
    const agent = (startOptions.agent ?? echoAgent)(turns)
    const webhook = startOptions.webhook ?? true
    const channel = Telegram.make({
      token: fake.token,
      apiBase: fake.url,
      stream: false,
      ...(webhook ? { webhookUrl: "https://bot.example.test/telegram/webhook", secretToken: SECRET } : {}),
      ...startOptions.options
    })
    const hostLayer = startOptions.authorizer === undefined ?
      TestHost.layer({
        channels: [channel],
        target: Agent.layer(agent),
        ...(startOptions.store === undefined ? {} : { store: startOptions.store })
      }) :
      AgentHostModule.layer({ channels: [channel] }).pipe(
        Layer.provideMerge(
          Turns.layer.pipe(
            Layer.provideMerge(Delivery.layer),
            Layer.provideMerge(Delivery.layerPushInProcess),
            Layer.provideMerge(Sessions.layerConfig),
            Layer.provideMerge(Channels.layer),
            Layer.provideMerge(Layer.succeed(Authorizer, startOptions.authorizer))
          )
        ),
        Layer.provide(Agent.layer(agent)),
        Layer.provide(startOptions.store ?? StateStoreModule.layerMemory),
        Layer.provide(HostConfig.layer({ port: 0, host: "127.0.0.1" }))
      )
    // The real HTTP client: the channel talks to the fake over loopback as it would to Telegram.
    const context = yield* Layer.build(Layer.provide(hostLayer, FetchHttpClient.layer)).pipe(Effect.orDie)
    const host = Context.get(context, AgentHost)
    const harness: Harness = {
      fake,
      host,
      turns,
      post: (body, secret = SECRET) => post(`${host.url}/telegram/webhook`, body, secret)
    }
    return harness
  })

let nextMessageId = 1

/** A message update for a chat (private unless `chat` says otherwise). */
export const message = (
  chatId: number,
  text: string,
  extra: Record<string, unknown> = {},
  updateId?: number
): Record<string, unknown> => ({
  ...(updateId === undefined ? {} : { update_id: updateId }),
  message: {
    message_id: nextMessageId++,
    date: 1_700_000_000,
    from: { id: chatId, is_bot: false, first_name: "Ada", username: "ada" },
    chat: { id: chatId, type: "private" },
    text,
    ...extra
  }
})

let nextUpdateId = 1
export const updateId = () => nextUpdateId++

/** Texts sent to a chat, in order. */
export const sentTexts = (fake: FakeTelegram, chatId?: number) =>
  fake.callsOf("sendMessage").filter((c) => chatId === undefined || Number(c.params.chat_id) === chatId).map((c) =>
    String(c.params.text)
  )
