/**
 * How a client going away reaches the fiber serving its request. The HTTP listener interrupts a request's fiber
 * when its client disconnects, which handlers observe only in regions they make interruptible. A turn that runs in
 * the request's own fiber (see `Turns.InlineTurns`) is such a region, yet must run to the end when its caller
 * leaves: while it runs the fiber is `shielded`, and the listener leaves it alone.
 */
import { FiberRef } from "effect"

/** `none`: not an HTTP request's fiber; `interrupts`: a disconnect interrupts it; `shielded`: it does not. */
export type ClientShield = "none" | "interrupts" | "shielded"

/**
 * Not inherited: a fiber the handler forks is not the request's fiber (something else may interrupt it, e.g. the
 * scope it was forked in), so a turn must not run inline there.
 */
export const currentClientShield: FiberRef.FiberRef<ClientShield> = FiberRef.unsafeMake<ClientShield>("none", {
  fork: () => "none"
})
