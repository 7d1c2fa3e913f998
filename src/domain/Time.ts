/**
 * Timestamps. Everything the host stores or compares is `EpochMillis` (milliseconds since the Unix epoch, from
 * `Clock`), so a stored time and a retention cutoff can never be in different units. Wire formats that count in
 * seconds (the OpenAI `created_at`) convert at render time with `toEpochSeconds`; ages and intervals are
 * `Duration`s, applied with `minus`/`plus`.
 */
import { Clock, Duration, Effect, Schema } from "effect"

/** Milliseconds since the Unix epoch (an integer, never negative). */
export const EpochMillis = Schema.Number.pipe(
  Schema.int({ message: () => "a timestamp is a whole number of milliseconds" }),
  Schema.nonNegative({ message: () => "a timestamp is not before 1970" }),
  Schema.brand("EpochMillis")
)
export type EpochMillis = typeof EpochMillis.Type

/** Whole seconds since the Unix epoch: only for wire formats that use them (never stored). */
export const EpochSeconds = Schema.Number.pipe(Schema.int(), Schema.nonNegative(), Schema.brand("EpochSeconds"))
export type EpochSeconds = typeof EpochSeconds.Type

/** A timestamp from a number of milliseconds (rounded down, clamped at the epoch). */
export const fromMillis = (millis: number): EpochMillis => Math.max(0, Math.floor(millis)) as EpochMillis

/** The current time, from `Clock` (so `TestClock` drives it in tests). */
export const now: Effect.Effect<EpochMillis> = Effect.map(Clock.currentTimeMillis, fromMillis)

/** The same instant in whole seconds, for wire formats such as the OpenAI `created_at`. */
export const toEpochSeconds = (time: EpochMillis): EpochSeconds => Math.floor(time / 1000) as EpochSeconds

/** The instant `duration` before `time` (clamped at the epoch): a retention cutoff is `minus(now, maxAge)`. */
export const minus = (time: EpochMillis, duration: Duration.DurationInput): EpochMillis =>
  fromMillis(time - Duration.toMillis(duration))

/** The instant `duration` after `time`. */
export const plus = (time: EpochMillis, duration: Duration.DurationInput): EpochMillis =>
  fromMillis(time + Duration.toMillis(duration))

/** How long from `earlier` to `later` (zero when `later` is not after `earlier`). */
export const between = (earlier: EpochMillis, later: EpochMillis): Duration.Duration =>
  Duration.millis(Math.max(0, later - earlier))

// The system clock, used whatever `Clock` the fiber has (a test's TestClock included): see `onWallClock`.
const wallClock = Clock.make()

/**
 * Runs `effect` on the wall clock, not the fiber's `Clock`. For shutdown waits only: a test's TestClock that nobody
 * advances must not hold shutdown open.
 */
export const onWallClock = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withClock(effect, wallClock)

/**
 * Sleeps on the wall clock (see `onWallClock`). Callers race this against the Effect clock, so a test can still end
 * the wait early.
 */
export const wallClockSleep = (duration: Duration.Duration): Effect.Effect<void> => onWallClock(Effect.sleep(duration))
