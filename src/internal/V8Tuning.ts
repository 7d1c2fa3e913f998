/**
 * V8 settings for a server process, applied by `Launch.launch` (what `npm start` and `effect-agent-host serve`
 * run) once the host has started (docs/OPERATIONS.md, "V8 settings": an app that composes the host's layers sets
 * the same flag itself).
 *
 * Allocation-site pretenuring off: V8 allocates objects straight into the old generation once objects from the
 * same allocation site were often seen surviving a young collection. A turn's objects wait across the group
 * commit, so some survive one; once their site is pretenured, every later turn's objects from it are born old and
 * keep what they point to (the request, the turn) alive through every scavenge until a full GC. Measured on
 * `POST /v1/responses` under load: 20% more req/s, p99 a quarter shorter (docs/PERFORMANCE.md, "Allocation-site
 * pretenuring"). It is turned off once the host has started, not before: the start itself, whose objects mostly
 * live on, is ~15 ms faster with pretenuring. V8 reads the flag as it collects, so setting it at run time is safe
 * (unlike the GC threading flags, which abort the process when set late); decisions already made stand, and
 * before the start ends no turn has run.
 */
import * as V8 from "node:v8"

/** Set once the flag is off: the launcher (scripts/start.cjs) compiles later bundles under the same flags. */
const tuned = Symbol.for("effect-agent-host/v8-tuned")

export const tuneForServer = (): void => {
  V8.setFlagsFromString("--no-allocation-site-pretenuring")
  ;(globalThis as Record<symbol, unknown>)[tuned] = true
}
