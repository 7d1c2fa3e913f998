/**
 * The `HttpClient` the host gives its channels for their outgoing calls (the Telegram Bot API, Bot Framework,
 * Discord): `@effect/platform-node`'s client on an undici `Agent` (keep-alive connections per origin), not the
 * global `fetch`, whose WHATWG streams and objects cost about twice the CPU per call (docs/PERFORMANCE.md,
 * "Telegram turns"). Loaded on the first call: a host whose channels call nothing (the default start) never
 * loads undici. Redirects are not followed (undici's default; a caller that follows them does it itself).
 */
import type { HttpClientError } from "@effect/platform"
import { HttpClient } from "@effect/platform"
import { Context, Deferred, Effect, FiberId, Layer } from "effect"

export const layer: Layer.Layer<HttpClient.HttpClient> = Layer.scoped(
  HttpClient.HttpClient,
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    // Built once, in this layer's scope (its dispatcher closes with it), by a fiber of its own: a first call
    // interrupted while undici loads (a timeout, a turn that ended) stops waiting, the load goes on for the next.
    // (`Effect.cached` would keep the interrupted caller's exit for every later call.)
    const load = Effect.promise(() => import("@effect/platform-node/NodeHttpClient")).pipe(
      Effect.flatMap((NodeHttpClient) => Layer.buildWithScope(NodeHttpClient.layerUndici, scope)),
      Effect.map(Context.get(HttpClient.HttpClient))
    )
    let loaded: Deferred.Deferred<HttpClient.HttpClient> | undefined
    const client = Effect.uninterruptibleMask((restore) =>
      Effect.suspend(() => {
        if (loaded !== undefined) return restore(Deferred.await(loaded))
        const deferred = Deferred.unsafeMake<HttpClient.HttpClient>(FiberId.none)
        loaded = deferred
        return Effect.zipRight(
          Effect.forkIn(Effect.interruptible(Effect.intoDeferred(load, deferred)), scope),
          restore(Deferred.await(deferred))
        )
      })
    )
    // Requests are handed over whole: the loaded client adds its span and trace headers, once.
    return HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
      (request) => Effect.flatMap(request, (ready) => Effect.flatMap(client, (inner) => inner.execute(ready))),
      Effect.succeed
    )
  })
)
