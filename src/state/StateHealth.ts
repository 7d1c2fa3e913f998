/**
 * Whether the state database answers, for `GET /readiness`: provided (in context, optionally) by a state backend
 * behind a network connection (Postgres, `PgDb`); the embedded ones need none. The host reads it with
 * `Effect.serviceOption`, so a host without it reports its channels only.
 */
import { Context, Duration, Effect } from "effect"

export interface StateHealthShape {
  /** Succeeds when the database answers; fails with why not (one line, no secrets). */
  readonly check: Effect.Effect<void, string>
}

export class StateHealth extends Context.Tag("effect-agent-host/StateHealth")<StateHealth, StateHealthShape>() {}

/** How long a readiness probe waits for the database before calling it unready. */
export const checkTimeout = Duration.seconds(2)

/** `probe` with the timeout, its failure described by `describe`. */
export const make = <E>(probe: Effect.Effect<unknown, E>, describe: (error: E) => string): StateHealthShape => ({
  check: probe.pipe(
    Effect.mapError(describe),
    Effect.timeoutFail({
      duration: checkTimeout,
      onTimeout: () => `no answer within ${Duration.format(checkTimeout)}`
    }),
    Effect.asVoid
  )
})
