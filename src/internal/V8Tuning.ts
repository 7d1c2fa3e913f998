/**
 * V8 settings for a server process, applied by the entrypoints (`main.ts`, the CLI's `bin.ts`) before the host
 * starts; an app that composes the host's layers itself can call it too.
 *
 * Allocation-site pretenuring off: V8 allocates objects straight into the old generation once objects from the
 * same allocation site were often seen surviving a young collection. A turn's objects wait across the group
 * commit, so some survive one; once their site is pretenured, every later turn's objects from it are born old and
 * keep what they point to (the request, the turn) alive through every scavenge until a full GC. Measured on
 * `POST /v1/responses` under load: the bytes promoted per scavenge fall by 60%, scavenges are ~30% shorter, and
 * req/s rise 7-10% (docs/PERFORMANCE.md, "Allocation-site pretenuring"). The flag is one V8 reads as it collects,
 * so setting it at run time is safe (unlike the GC threading flags, which abort the process when set late).
 */
import * as V8 from "node:v8"

export const tuneForServer = (): void => {
  V8.setFlagsFromString("--no-allocation-site-pretenuring")
}
