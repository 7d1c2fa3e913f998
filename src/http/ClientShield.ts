/**
 * How a client going away reaches the fiber serving its request. The HTTP listener interrupts a request's fiber
 * when its client disconnects, which handlers observe only in regions they make interruptible. A turn that runs in
 * the request's own fiber (see `Turns.InlineTurns`) is such a region, yet must run to the end when its caller
 * leaves: while it runs the fiber is `shielded`, and the listener leaves it alone.
 */
import type { Fiber } from "effect"
import { FiberRef } from "effect"

/**
 * `none`: not an HTTP request's fiber; `interrupts`: a disconnect interrupts it; `shielded`: it does not;
 * `requests`: the listener's runtime, whose forks (`Runtime.runFork`) are request fibers.
 */
export type ClientShield = "none" | "interrupts" | "shielded" | "requests"

/**
 * A fiber's shield. A request fiber gets a cell of its own when it is forked, and a turn switches it in place
 * (`shield`/`restore`): setting a fiber ref instead copies all of the fiber's refs, twice per turn. The shared
 * `none` and `requests` cells are never switched.
 */
export interface ShieldCell {
  readonly state: ClientShield
}

interface RequestCell {
  state: ClientShield
}

const none: ShieldCell = { state: "none" }

/** The value of the listener's runtime: each fiber forked from it gets a cell of its own, `interrupts`. */
export const requests: ShieldCell = { state: "requests" }

/**
 * Not inherited: a fiber the handler forks is not the request's fiber (something else may interrupt it, e.g. the
 * scope it was forked in), so a turn must not run inline there. Forking applies this to every fiber, the
 * listener's `runFork` of a request's fiber too; hence the `requests` value of its runtime, whose forks get a new
 * `interrupts` cell (a value set on the runtime would otherwise never reach a fiber). Joining a child keeps the
 * parent's cell: the shield belongs to the fiber.
 */
export const currentClientShield: FiberRef.FiberRef<ShieldCell> = FiberRef.unsafeMake<ShieldCell>(none, {
  fork: (parent) => parent === requests ? { state: "interrupts" } : none,
  join: (parent) => parent
})

/** The shield of `fiber`. */
export const stateOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): ClientShield =>
  fiber.getFiberRef(currentClientShield).state

/**
 * Shields `fiber`'s request while a turn runs in it; what it was, for `restore`. Only a request fiber's own cell
 * is switched (`interrupts` or `shielded`); any other fiber has no client to shield from.
 */
export const shield = (fiber: Fiber.RuntimeFiber<unknown, unknown>): ClientShield => {
  const cell = fiber.getFiberRef(currentClientShield)
  const was = cell.state
  if (was === "interrupts") (cell as RequestCell).state = "shielded"
  return was
}

/** Puts back what `shield` found. */
export const restore = (fiber: Fiber.RuntimeFiber<unknown, unknown>, was: ClientShield): void => {
  const cell = fiber.getFiberRef(currentClientShield)
  if (cell.state === "shielded" && was === "interrupts") (cell as RequestCell).state = was
}
