/**
 * Example 2: a custom channel in a few dozen lines — a plain-text webhook. `POST /plain/<user>` with a text
 * body answers the agent's reply as text; each user gets their own session.
 *
 * Run it: `npx tsx examples/custom-channel.ts` (the embedded default agent, on 127.0.0.1:8000; `PORT`/`HOST`
 * as for `npm start`), then `curl -s localhost:8000/plain/ann -d hello`.
 */
import { HttpServerResponse } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import * as Channel from "../src/core/Channel.js"
import * as DefaultAgent from "../src/core/DefaultAgent.js"
import * as HostConfig from "../src/core/HostConfig.js"
import * as HostLayers from "../src/core/HostLayers.js"
import type { ChannelRequest } from "../src/domain/ChannelRequest.js"
import type { ChannelName, IsolationKey } from "../src/domain/Ids.js"
import { responseText, userMessage } from "../src/domain/Message.js"
import { readText } from "../src/http/HttpBody.js"
import * as StateStore from "../src/state/StateStore.js"

export const plainText = Channel.make("plain", (ctx) =>
  Effect.succeed({
    path: "/plain",
    routes: [{
      method: "POST",
      path: "/:user",
      handler: ({ params, request }) =>
        Effect.gen(function*() {
          const text = yield* readText(request, ctx.settings.maxBodyBytes).pipe(Effect.orElseSucceed(() => ""))
          if (text.trim() === "") return HttpServerResponse.text("send some text\n", { status: 400 })
          const user = params["user"]!
          const turn: ChannelRequest = {
            channel: "plain",
            operation: "message.create",
            input: [userMessage(text)],
            session: { isolationKey: `plain:${user}` as IsolationKey },
            identity: { channel: "plain" as ChannelName, nativeId: user },
            stream: false
          }
          return yield* ctx.run(turn).pipe(
            Effect.map(({ originating }) =>
              HttpServerResponse.text(
                Option.match(originating, { onNone: () => "", onSome: (r) => responseText(r.response) })
              )
            ),
            Effect.catchAll((error) => Effect.succeed(HttpServerResponse.text(`${error.message}\n`, { status: 500 })))
          )
        })
    }]
  }))

/** The channel in a host of its own: the default agent, in-memory state; it needs a HostConfig. */
export const PlainTextApp = HostLayers.layerWithCore({ channels: [plainText] }).pipe(
  Layer.provide(DefaultAgent.layer),
  Layer.provide(StateStore.layerMemory)
)

if (import.meta.url === `file://${process.argv[1]}`) {
  NodeRuntime.runMain(Layer.launch(PlainTextApp.pipe(Layer.provide(HostConfig.layerConfig()))), {
    disablePrettyLogger: true
  })
}
