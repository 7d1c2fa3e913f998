/**
 * How a client going away reaches the fiber serving its request. The HTTP listener interrupts a request's fiber
 * when its client disconnects, which handlers observe only in regions they make interruptible. A turn that runs in
 * the request's own fiber (see `Turns.InlineTurns`) is such a region, yet must run to the end when its caller
 * leaves: while it runs the fiber is `shielded`, and the listener leaves it alone.
 */
import { FiberRef } from "effect"

/**
 * `none`: not an HTTP request's fiber; `interrupts`: a disconnect interrupts it; `shielded`: it does not;
 * `requests`: the listener's runtime, whose forks (`Runtime.runFork`) are request fibers.
 */
export type ClientShield = "none" | "interrupts" | "shielded" | "requests"

/**
 * Not inherited: a fiber the handler forks is not the request's fiber (something else may interrupt it, e.g. the
 * scope it was forked in), so a turn must not run inline there. Forking applies this to every fiber, the
 * listener's `runFork` of a request's fiber too; hence the `requests` value of its runtime, which forks become
 * `interrupts` (a value set on the runtime would otherwise never reach a fiber).
 */
export const currentClientShield: FiberRef.FiberRef<ClientShield> = FiberRef.unsafeMake<ClientShield>("none", {
  fork: (parent) => parent === "requests" ? "interrupts" : "none"
})
