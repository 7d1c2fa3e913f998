/**
 * Sizes in bytes. A limit or a measured size that crosses modules is a `Bytes`, never a bare number, so a count
 * of messages or characters cannot be mistaken for one. Config values accept a whole number of bytes or a number
 * with a binary unit (`64 MiB`, `512KiB`, `1 GiB`).
 */
import { Config, ConfigError, Either, Schema } from "effect"

/** A whole, non-negative number of bytes. */
export const Bytes = Schema.Number.pipe(
  Schema.int({ message: () => "a size is a whole number of bytes" }),
  Schema.nonNegative({ message: () => "a size is not negative" }),
  Schema.brand("Bytes")
)
export type Bytes = typeof Bytes.Type

/** A size from a number of bytes (rounded up, clamped at zero). */
export const bytes = (n: number): Bytes => Math.max(0, Math.ceil(n)) as Bytes

export const kibibytes = (n: number): Bytes => bytes(n * 1024)

export const mebibytes = (n: number): Bytes => bytes(n * 1024 * 1024)

export const add = (a: Bytes, b: Bytes): Bytes => (a + b) as Bytes

export const subtract = (a: Bytes, b: Bytes): Bytes => bytes(a - b)

const units: Readonly<Record<string, number>> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }

/** Parses `1048576`, `512 KiB`, `64MiB`, `1 GiB` (units are binary and case-insensitive). */
export const parse = (text: string): Either.Either<Bytes, string> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = units[(match?.[2] ?? "").toLowerCase() || "b"]
  if (match === null || unit === undefined) {
    return Either.left(`"${text.slice(0, 40)}" is not a size: use bytes or a number with KiB, MiB or GiB`)
  }
  const value = Number(match[1]) * unit
  return Number.isSafeInteger(Math.ceil(value)) ? Either.right(bytes(value)) : Either.left("the size is too large")
}

/** A size read from config (`AGENT_HOST_HISTORY_CACHE_BYTES=64MiB`). */
export const config = (name: string): Config.Config<Bytes> =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => Either.mapLeft(parse(text), (message) => ConfigError.InvalidData([name], message)))
  )

/**
 * A cheap estimate of how much heap a JSON-like value holds: 2 bytes per string character plus a fixed overhead
 * per value. Walks the value once; deeper than `maxDepth` counts as a fixed amount.
 */
export const estimate = (value: unknown, maxDepth = 64): Bytes => bytes(walk(value, maxDepth))

const walk = (value: unknown, depth: number): number => {
  switch (typeof value) {
    case "string":
      return 16 + 2 * value.length
    case "number":
    case "boolean":
    case "undefined":
    case "bigint":
      return 8
    case "object": {
      if (value === null) return 8
      if (depth <= 0) return 64
      let total = 32
      if (Array.isArray(value)) {
        for (const item of value) total += 8 + walk(item, depth - 1)
        return total
      }
      for (const key in value) {
        if (Object.prototype.hasOwnProperty.call(value, key)) {
          total += 16 + 2 * key.length + walk((value as Record<string, unknown>)[key], depth - 1)
        }
      }
      return total
    }
    default:
      return 16
  }
}
