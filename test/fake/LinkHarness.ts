/**
 * A real host whose authorization links identities with OIDC against a FakeIdp, for the linking tests: the test
 * chat channel (and any others), an agent that records each turn with its request context, and the state store
 * of the test's choosing (memory, or SQLite in a directory that a second start reopens).
 */
import { FetchHttpClient } from "@effect/platform"
import type { Scope } from "effect"
import { Context, Effect, Layer, Option } from "effect"
import type { AuthorizationConfig } from "../../src/auth/Authorization.js"
import * as Authorization from "../../src/auth/Authorization.js"
import { IdentityLinker } from "../../src/auth/IdentityLinker.js"
import type { OidcSettings } from "../../src/auth/OidcLinker.js"
import * as OidcLinker from "../../src/auth/OidcLinker.js"
import * as Agent from "../../src/core/Agent.js"
import type { AgentHostShape } from "../../src/core/AgentHost.js"
import * as AgentHost from "../../src/core/AgentHost.js"
import type { Channel } from "../../src/core/Channel.js"
import * as HostConfig from "../../src/core/HostConfig.js"
import * as HostLayers from "../../src/core/HostLayers.js"
import type { RequestContextValue } from "../../src/core/RequestContext.js"
import { RequestContext } from "../../src/core/RequestContext.js"
import type { ChannelRequest } from "../../src/domain/ChannelRequest.js"
import { textOf } from "../../src/domain/Content.js"
import { ResponseTargets } from "../../src/domain/Identity.js"
import { assistantMessage } from "../../src/domain/Message.js"
import type { StateStoreShape } from "../../src/state/StateStore.js"
import { StateStore } from "../../src/state/StateStore.js"
import type { FakeIdp } from "./FakeIdp.js"

export interface Recorded {
  readonly text: string
  readonly sessionId: string | undefined
  readonly context: RequestContextValue
}

/** Replies `echo: <text>` and records the turn with its request context. */
export const recordingAgent = (turns: Array<Recorded>) =>
  Agent.make({
    name: "echo",
    run: (turn) =>
      Effect.gen(function*() {
        const context = Option.getOrThrow(yield* Effect.serviceOption(RequestContext))
        const user = turn.input.filter((m) => m.role === "user")
        const text = textOf(user[user.length - 1]?.contents ?? [])
        turns.push({ text, sessionId: turn.sessionId, context })
        return { messages: [assistantMessage(`echo: ${text}`)] }
      })
  })

/** A free loopback port (the link callback URL must be known before the host starts). */
export { freePort } from "../utils/ServerProcess.js"

/** Channel hooks that answer every identity linked to the person (`ResponseTargets.allLinked`). */
export const allLinked = {
  run: (request: ChannelRequest) => Effect.succeed({ ...request, responseTarget: ResponseTargets.allLinked })
}

export interface LinkHost {
  readonly host: AgentHostShape
  readonly store: StateStoreShape
  readonly linker: IdentityLinker["Type"]
  readonly turns: Array<Recorded>
  /** POSTs JSON to a path of the host. */
  readonly post: (path: string, body: unknown) => Effect.Effect<{ readonly status: number; readonly body: any }>
}

export const start = <R>(options: {
  readonly idp: FakeIdp
  readonly channels: ReadonlyArray<Channel<never, R>>
  readonly authorization: AuthorizationConfig
  readonly store: Layer.Layer<StateStore, unknown>
  readonly port: number
  readonly oidc?: Partial<OidcSettings>
  /** More host settings (e.g. `tracing`). */
  readonly settings?: Partial<HostConfig.HostConfigShape>
}): Effect.Effect<LinkHost, never, Scope.Scope> =>
  Effect.gen(function*() {
    const turns: Array<Recorded> = []
    const settings: OidcSettings = {
      issuer: options.idp.issuer,
      clientId: options.idp.clientId,
      clientSecret: undefined,
      redirectBaseUrl: `http://127.0.0.1:${options.port}`,
      ...options.oidc
    }
    const authorization = Authorization.layer(options.authorization).pipe(Layer.provide(OidcLinker.layer(settings)))
    const hostLayer = AgentHost.layer({ channels: options.channels }).pipe(
      Layer.provide(FetchHttpClient.layer),
      Layer.provideMerge(HostLayers.layerCoreWith({ authorization })),
      Layer.provide(Agent.layer(recordingAgent(turns))),
      Layer.provideMerge(options.store),
      Layer.provide(HostConfig.layer({ ...options.settings, port: options.port, host: "127.0.0.1" }))
    )
    const context = yield* Layer.build(hostLayer as Layer.Layer<AgentHost.AgentHost | StateStore | IdentityLinker>)
      .pipe(Effect.orDie)
    const host = Context.get(context, AgentHost.AgentHost)
    const post = (path: string, body: unknown) =>
      Effect.promise(async () => {
        const response = await fetch(`${host.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body)
        })
        const text = await response.text()
        return { status: response.status, body: text.length === 0 ? undefined : JSON.parse(text) }
      })
    return {
      host,
      store: Context.get(context, StateStore),
      linker: Context.get(context, IdentityLinker),
      turns,
      post
    }
  })
