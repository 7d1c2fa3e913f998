/** A memory `StateStore` that records each history and response write, and whether its caller waited for it. */
import { Effect, Layer } from "effect"
import * as StateStore from "../../src/state/StateStore.js"

export type Write = "append" | "append (queued)" | "response"

export const layer = (writes: Array<Write>) =>
  Layer.effect(
    StateStore.StateStore,
    Effect.map(StateStore.makeMemory, (store) => ({
      ...store,
      appendHistory: (sessionId, messages, options) =>
        Effect.zipRight(
          Effect.sync(() => void writes.push(options?.wait === false ? "append (queued)" : "append")),
          store.appendHistory(sessionId, messages, options)
        ),
      putResponse: (response) =>
        Effect.zipRight(Effect.sync(() => void writes.push("response")), store.putResponse(response))
    }))
  )
