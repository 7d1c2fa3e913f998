/**
 * Pushes workflow endings nobody is waiting for: when an execution finishes (or waits for input) after the
 * turn that followed it is gone (a restart, a dropped request, a turn timeout), its outputs are pushed to the
 * identity most recently active on the session's key, if that identity's channel can push. Otherwise they
 * stay for the session's next message, as before.
 *
 * It sits above the core (it needs `Channels`, `StateStore` and `PushScheduler`, which sit above `Target`), so
 * the workflow target itself never calls delivery. See docs/WORKFLOWS.md.
 */
import { Duration, Effect, Layer } from "effect"
import { Channels } from "../core/Channels.js"
import { Target } from "../core/Target.js"
import { PushScheduler } from "../delivery/Delivery.js"
import type { ChannelRequest, HostedRunResult } from "../domain/ChannelRequest.js"
import type { IsolationKey } from "../domain/Ids.js"
import { StateStore } from "../state/StateStore.js"
import { WorkflowStore } from "./WorkflowStore.js"
import type { Ending } from "./WorkflowTarget.js"
import { isWorkflowTarget } from "./WorkflowTarget.js"

export interface Options {
  /** How often to look for endings when no execution signalled a change (default 1 second). */
  readonly interval?: Duration.DurationInput
}

/** Runs the recovery loop in the scope: a no-op when the target is not a workflow target. */
export const run = Effect.fnUntraced(function*(options: Options = {}) {
  const target = yield* Target
  if (!isWorkflowTarget(target)) return
  const workflows = yield* WorkflowStore
  const state = yield* StateStore
  const channels = yield* Channels
  const scheduler = yield* PushScheduler
  const interval = Duration.decode(options.interval ?? "1 second")

  // The session id is the isolation key, or `<key>#<alias>` after a reset.
  const keyOf = Effect.fnUntraced(function*(sessionId: string) {
    const direct = yield* state.identities(sessionId)
    if (direct.length > 0) return { key: sessionId, identities: direct }
    const hash = sessionId.lastIndexOf("#")
    if (hash <= 0) return { key: sessionId, identities: direct }
    const key = sessionId.slice(0, hash)
    return { key, identities: yield* state.identities(key) }
  })

  const deliver = (ending: Ending): Effect.Effect<boolean> =>
    Effect.gen(function*() {
      const { identities, key } = yield* keyOf(ending.sessionId)
      const identity = identities[0]
      if (identity === undefined) return false
      if (channels.unsafeGet(identity.channel)?.contribution.push === undefined) return false
      const session = { isolationKey: key as IsolationKey }
      const request: ChannelRequest = {
        channel: identity.channel,
        operation: "workflow.ending",
        input: [],
        session,
        identity,
        stream: false
      }
      const result: HostedRunResult = {
        result: ending.result,
        response: ending.response,
        session,
        sessionId: ending.sessionId
      }
      return yield* scheduler.schedule({
        destination: { channel: identity.channel, identity },
        request,
        result,
        echo: undefined,
        idempotencyKey: `workflow:${ending.executionId}:${ending.from}-${ending.to}`
      }).pipe(
        Effect.as(true),
        Effect.catchAll((e) =>
          Effect.as(Effect.logWarning("workflow ending push could not be scheduled", e.message), false)
        )
      )
    })

  const pass = target.recoverEndings(deliver).pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("workflow recovery pass failed", cause))
  )
  const changes = yield* workflows.changes
  yield* Effect.forkScoped(
    Effect.forever(Effect.gen(function*() {
      yield* pass
      // Wake on an execution's change, or look again after `interval` (a restart signals nothing).
      yield* changes.take.pipe(Effect.timeout(interval), Effect.ignore)
      yield* changes.takeAll
    }))
  )
})

/** The recovery loop as a layer: put it above the host's core (it needs `Target`, the stores and push). */
export const layer = (
  options: Options = {}
): Layer.Layer<never, never, Target | WorkflowStore | StateStore | Channels | PushScheduler> =>
  Layer.scopedDiscard(run(options))
