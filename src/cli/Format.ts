/**
 * Parsing and printing for the CLI: durations (`7d`), channel identities (`telegram:42`), plain-text tables.
 */
import { Duration, Either, Option } from "effect"

const units: Record<string, (n: number) => Duration.Duration> = {
  ms: Duration.millis,
  s: Duration.seconds,
  m: Duration.minutes,
  h: Duration.hours,
  d: Duration.days,
  w: Duration.weeks
}

/**
 * A positive duration: `90s`, `30m`, `12h`, `7d`, `2w`, `500ms`, combined (`1d12h`), or as Effect writes them
 * (`7 days`, `90 seconds`).
 */
export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const input = text.trim()
  const problem = `"${input.slice(0, 40)}" is not a duration: write a positive number with a unit, e.g. 90s, ` +
    `30m, 12h, 7d, 2w (or 1d12h)`
  let total: Duration.Duration | undefined
  if (/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(input)) {
    total = Duration.zero
    for (const [, amount, unit] of input.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
      total = Duration.sum(total, units[unit!]!(Number(amount)))
    }
  } else {
    total = Option.getOrUndefined(Duration.decodeUnknown(input))
  }
  if (total === undefined || !Duration.isFinite(total) || Duration.lessThanOrEqualTo(total, Duration.zero)) {
    return Either.left(problem)
  }
  return Either.right(total)
}

/** A channel identity as `<channel>:<native id>` (the id may itself hold colons: Teams ids do). */
export interface IdentityRef {
  readonly channel: string
  readonly nativeId: string
}

export const parseIdentity = (text: string): Either.Either<IdentityRef, string> => {
  const at = text.indexOf(":")
  if (at <= 0 || at === text.length - 1) {
    return Either.left(
      `"${text.slice(0, 60)}" is not an identity: write <channel>:<native id>, e.g. telegram:123456789`
    )
  }
  return Either.right({ channel: text.slice(0, at), nativeId: text.slice(at + 1) })
}

export const formatIdentity = (ref: IdentityRef) => `${ref.channel}:${ref.nativeId}`

/** Epoch milliseconds as an ISO timestamp (seconds precision). */
export const isoTime = (millis: number) => new Date(millis).toISOString().replace(/\.\d{3}Z$/, "Z")

const clip = (text: string, width: number) => text.length <= width ? text : `${text.slice(0, width - 1)}…`

/** Rows as aligned columns under `headers`; every cell on one line, long ones clipped to `maxWidth`. */
export const table = (
  headers: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  maxWidth = 60
): string => {
  const cells = [headers, ...rows].map((row) => row.map((cell) => clip(cell.replace(/\s+/g, " "), maxWidth)))
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0)))
  return cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")
}
