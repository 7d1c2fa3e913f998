/**
 * A minimal chat channel for tests: `POST /<name>` with `{ "user"?, "text", "key"? }` runs a turn as that user and
 * answers `{ "reply" }`, the way a chat app would: a refusal or a sign-in request is a reply text too
 * (`denied` / `link` say which), other turn errors are the host's JSON error envelope.
 */
import { Effect, Option } from "effect"
import type { Channel } from "../../src/core/Channel.js"
import * as ChannelModule from "../../src/core/Channel.js"
import type { ChannelRequest } from "../../src/domain/ChannelRequest.js"
import { turnErrorStatus } from "../../src/domain/Errors.js"
import type { ChannelIdentity } from "../../src/domain/Identity.js"
import type { IsolationKey } from "../../src/domain/Ids.js"
import { responseText, userMessage } from "../../src/domain/Message.js"
import { errorJson, json, readJson } from "../../src/http/HttpBody.js"

interface Body {
  readonly user?: string
  readonly text: string
  readonly key?: string
}

export const make = (name = "testchat"): Channel =>
  ChannelModule.make(name, (ctx) =>
    Effect.succeed({
      path: `/${name}`,
      routes: [{
        method: "POST",
        path: "/",
        handler: (input) =>
          Effect.gen(function*() {
            const body = (yield* Effect.orDie(readJson(input.request, ctx.settings.maxBodyBytes))) as Body
            const request: ChannelRequest = {
              channel: name,
              operation: "message.create",
              input: [userMessage(body.text)],
              stream: false,
              ...(body.user === undefined ?
                {} :
                { identity: { channel: name, nativeId: body.user } as ChannelIdentity }),
              ...(body.key === undefined ? {} : { session: { isolationKey: body.key as IsolationKey } })
            }
            return yield* ctx.run(request).pipe(
              Effect.map(({ originating: shaped }) =>
                json({ reply: Option.isSome(shaped) ? responseText(shaped.value.response) : "" })
              ),
              Effect.catchTags({
                AccessDenied: (error) => Effect.succeed(json({ reply: error.message, denied: error.reasonCode })),
                LinkRequiredError: (error) => Effect.succeed(json({ reply: error.message, link: error.url ?? null }))
              }),
              Effect.catchAll((error) => Effect.succeed(errorJson(turnErrorStatus(error), error._tag, error.message)))
            )
          })
      }]
    }))
