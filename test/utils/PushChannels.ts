/**
 * Small test channels with push: `POST /<name>/say` runs a turn for `{ text, user, session, target?, stream? }`
 * and answers `{ reply }` (null when the reply went elsewhere only), or a turn error as the error envelope;
 * `push` records every delivery.
 */
import { Effect, Option, Stream } from "effect"
import type { Channel, ChannelHooks, PushFailed } from "../../src/core/Channel.js"
import * as ChannelModule from "../../src/core/Channel.js"
import type { ChannelRequest, HostedRunResult } from "../../src/domain/ChannelRequest.js"
import type { TurnError } from "../../src/domain/Errors.js"
import { turnErrorStatus } from "../../src/domain/Errors.js"
import type { ChannelIdentity, ResponseTarget } from "../../src/domain/Identity.js"
import type { IsolationKey } from "../../src/domain/Ids.js"
import { responseText, userMessage } from "../../src/domain/Message.js"
import { errorJson, json, readJson } from "../../src/http/HttpBody.js"

export interface Delivery {
  readonly channel: string
  readonly nativeId: string
  readonly isEcho: boolean
  readonly key: string
  readonly text: string
  readonly roles: ReadonlyArray<string>
}

export interface Options {
  readonly push?: boolean
  readonly hooks?: ChannelHooks
  /** Decides the outcome of each push; undefined delivers. */
  readonly fail?: (delivery: Delivery) => PushFailed | undefined
  /** Runs before each push is recorded (a stalled destination waits here). */
  readonly before?: (delivery: Delivery) => Effect.Effect<void>
}

const allText = (result: HostedRunResult) =>
  result.response.messages.flatMap((m) => m.contents.flatMap((c) => c._tag === "text" ? [c.text] : [])).join(" ")

export const make = (name: string, log: Array<Delivery>, options: Options = {}): Channel =>
  ChannelModule.make(name, (ctx) =>
    Effect.sync(() => {
      const say = ChannelModule.handler((input) =>
        Effect.gen(function*() {
          const body = (yield* Effect.orDie(readJson(input.request, 1_000_000))) as {
            text: string
            user: string
            session: string
            target?: ResponseTarget
            stream?: boolean
          }
          const request: ChannelRequest = {
            channel: name,
            operation: "message.create",
            input: [userMessage(body.text)],
            session: { isolationKey: `shared:${body.session}` as IsolationKey },
            identity: { channel: name, nativeId: body.user } as ChannelIdentity,
            ...(body.target === undefined ? {} : { responseTarget: body.target }),
            stream: body.stream === true
          }
          const refused = (e: TurnError) =>
            errorJson(turnErrorStatus(e), e._tag === "AccessDenied" ? e.reasonCode : e._tag, e.message)
          if (body.stream === true) {
            const started = yield* Effect.either(ctx.runStream(request))
            if (started._tag === "Left") return refused(started.left)
            const turn = started.right
            yield* Stream.runDrain(turn.updates).pipe(Effect.orDie)
            const shaped = (yield* Effect.orDie(turn.result)).originating
            return json({ reply: Option.isSome(shaped) ? responseText(shaped.value.response) : null })
          }
          const ran = yield* Effect.either(ctx.run(request))
          if (ran._tag === "Left") return refused(ran.left)
          const shaped = ran.right.originating
          return json({ reply: Option.isSome(shaped) ? responseText(shaped.value.response) : null })
        })
      )
      return {
        path: `/${name}`,
        routes: [{ method: "POST", path: "/say", handler: say }],
        ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
        ...(options.push === false ? {} : {
          push: {
            push: (identity, result, { idempotencyKey, isEcho }) =>
              Effect.suspend(() => {
                const delivery: Delivery = {
                  channel: name,
                  nativeId: identity.nativeId,
                  isEcho,
                  key: idempotencyKey,
                  text: isEcho ? allText(result) : responseText(result.response),
                  roles: result.response.messages.map((m) => m.role)
                }
                const failure = options.fail?.(delivery)
                if (failure !== undefined) return Effect.fail(failure)
                return Effect.zipRight(options.before?.(delivery) ?? Effect.void, Effect.sync(() => log.push(delivery)))
              })
          }
        })
      }
    }))
