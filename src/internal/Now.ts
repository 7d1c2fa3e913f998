/**
 * Sequencing for the turn's hot path that skips the fiber when a step has already succeeded. `Effect.succeed`,
 * `Effect.void` and the like are `Exit` values: continuing from one through `flatMap` costs fiber steps (the
 * continuation pushed, the value popped through it) for nothing. These continue at once instead, and fall back to
 * `flatMap`/`map` for anything that must run. Only for effects built to run right away: the continuation runs when
 * the combinator is called, not when the combined effect runs.
 */
import type { Fiber, FiberRef } from "effect"
import { Effect, Exit } from "effect"

/** The effect itself when it is already a success (read its `value`), else undefined (a failure or one to run). */
export const succeeded = <A, E, R>(effect: Effect.Effect<A, E, R>): Exit.Success<A, E> | undefined =>
  Exit.isExit(effect) && Exit.isSuccess(effect as Exit.Exit<A, E>) ? effect as Exit.Success<A, E> : undefined

/** `Effect.flatMap`, at once when `effect` has already succeeded. */
export const andThen = <A, E, R, B, E2, R2>(
  effect: Effect.Effect<A, E, R>,
  f: (a: A) => Effect.Effect<B, E2, R2>
): Effect.Effect<B, E | E2, R | R2> => {
  const done = succeeded(effect)
  return done === undefined ? Effect.flatMap(effect, f) : f(done.value)
}

/** `Effect.map`, at once when `effect` has already succeeded. */
export const map = <A, E, R, B>(effect: Effect.Effect<A, E, R>, f: (a: A) => B): Effect.Effect<B, E, R> => {
  const done = succeeded(effect)
  return done === undefined ? Effect.map(effect, f) : Effect.succeed(f(done.value))
}

/** `Effect.as`: the value `b` once `effect` has succeeded; `b` at once when it already has. */
export const as = <A, E, R, B>(effect: Effect.Effect<A, E, R>, b: B): Effect.Effect<B, E, R> =>
  succeeded(effect) === undefined ? Effect.as(effect, b) : Effect.succeed(b)

/** `Effect.zipRight`: `next` at once when `effect` has already succeeded. */
export const zipRight = <A, E, R, B, E2, R2>(
  effect: Effect.Effect<A, E, R>,
  next: Effect.Effect<B, E2, R2>
): Effect.Effect<B, E | E2, R | R2> => succeeded(effect) === undefined ? Effect.zipRight(effect, next) : next

/**
 * Sets a fiber ref of `fiber` at once, as `FiberRef.set` does when it runs (it calls this same method of the
 * fiber's runtime, which the public `RuntimeFiber` type does not show). Only for the fiber that is running the
 * caller, from inside its own run (a `withFiberRuntime` body or a continuation): no fiber step, no region.
 */
export const setFiberRef = <A>(fiber: Fiber.RuntimeFiber<unknown, unknown>, ref: FiberRef.FiberRef<A>, value: A) =>
  (fiber as unknown as SettableFiber).setFiberRef(ref, value)

interface SettableFiber {
  readonly setFiberRef: <A>(ref: FiberRef.FiberRef<A>, value: A) => void
}
