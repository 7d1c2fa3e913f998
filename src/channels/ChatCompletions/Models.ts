/**
 * `GET /v1/models` and `GET /v1/models/{id}`: the hosted target as the one model (OpenAI's list shape), so tools
 * that list models first (Open WebUI, LiteLLM, LibreChat) find it. A channel of its own, enabled with the
 * OpenAI-compatible channels (Responses, Chat Completions); guarded by the API keys like them.
 */
import { Effect } from "effect"
import type { Channel, ChannelContext } from "../../core/Channel.js"
import * as ChannelModule from "../../core/Channel.js"
import * as Time from "../../domain/Time.js"
import { makeChecker } from "../../http/ApiKeys.js"
import { json } from "../../http/HttpBody.js"
import { errorResponse } from "./Wire.js"

export interface Options {
  readonly name?: string
  /** Mount prefix (default `/v1`). */
  readonly path?: string
  /** The model id (default: the target's name, e.g. `default-agent`). */
  readonly id?: string
  /** `owned_by` (default `agent-host`). */
  readonly ownedBy?: string
}

export const make = (options: Options = {}): Channel =>
  ChannelModule.make<never, never>(options.name ?? "models", (ctx: ChannelContext) =>
    Effect.gen(function*() {
      const authorized = makeChecker(ctx.settings.apiKeys)
      const id = options.id ?? ctx.target.name
      const model = {
        id,
        object: "model",
        // When this process started serving it: OpenAI's `created` is a Unix time in seconds.
        created: Math.floor((yield* Time.now) / 1000),
        owned_by: options.ownedBy ?? "agent-host"
      }
      const list = json({ object: "list", data: [model] })
      const one = json(model)
      const unauthorized = errorResponse(
        401,
        "invalid_api_key",
        "a valid API key is required: send Authorization: Bearer <key>"
      )
      return {
        kind: "programmatic",
        path: options.path ?? "/v1",
        routes: [
          {
            method: "GET",
            path: "/models",
            handler: (input) => Effect.succeed(authorized(input.request) ? list : unauthorized)
          },
          {
            method: "GET",
            path: "/models/:id",
            handler: (input) =>
              Effect.succeed(
                !authorized(input.request) ?
                  unauthorized :
                  input.params.id === id ?
                  one :
                  errorResponse(
                    404,
                    "model_not_found",
                    `The model ${JSON.stringify(input.params.id ?? "")} does not exist; this host serves ${
                      JSON.stringify(id)
                    }`,
                    "model"
                  )
              )
          }
        ],
        describe: `GET /models (${id})`
      }
    }))
