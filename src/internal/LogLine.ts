/**
 * The host's log line: logfmt (`timestamp=… level=… fiber=… message=… key=value`) in which every value is
 * escaped, so nothing a caller controls (a target name, a session key, an upstream body, a stack trace) can
 * break a line in two, forge a line of its own or drive the terminal (ANSI escapes, bidi overrides).
 */
import { Cause, FiberId, HashMap, Inspectable, List, Logger } from "effect"
import type { LogSpan } from "effect"

// Characters that need quoting: whitespace, quotes, '=', backslash, and every control or formatting character.
const unsafe = /[\s"=\\\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/
const escaped = /["\\\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g

const escapeChar = (c: string): string => {
  switch (c) {
    case "\n":
      return "\\n"
    case "\r":
      return "\\r"
    case "\t":
      return "\\t"
    case "\"":
      return "\\\""
    case "\\":
      return "\\\\"
    default:
      return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`
  }
}

/** A logfmt value: bare when it is plain text, else quoted with every control character escaped. */
export const escapeValue = (value: string): string =>
  value.length > 0 && !unsafe.test(value) ? value : `"${value.replace(escaped, escapeChar)}"`

/** A logfmt key: anything but letters, digits, '_', '.', '-' and ':' becomes '_'. */
export const escapeKey = (key: string): string => key.length === 0 ? "_" : key.replace(/[^\w.:-]/g, "_")

const field = (key: string, value: string) => ` ${escapeKey(key)}=${escapeValue(value)}`

const spanField = (now: number, span: LogSpan.LogSpan) => field(span.label, `${now - span.startTime}ms`)

/** Renders one log entry as a single line. */
export const format = (options: Logger.Logger.Options<unknown>): string => {
  const { annotations, cause, date, fiberId, logLevel, message, spans } = options
  let out = `timestamp=${date.toISOString()} level=${logLevel.label}`
  out += field("fiber", FiberId.threadName(fiberId))
  const messages = Array.isArray(message) ? message : [message]
  for (const m of messages) out += field("message", Inspectable.toStringUnknown(m, 0))
  if (!Cause.isEmptyType(cause)) out += field("cause", Cause.pretty(cause, { renderErrorCause: true }))
  const now = date.getTime()
  for (const span of List.toArray(spans)) out += spanField(now, span)
  for (const [key, value] of HashMap.toEntries(annotations)) out += field(key, Inspectable.toStringUnknown(value, 0))
  return out
}

/** The line logger, unwritten (for tests and custom sinks). */
export const lineLogger: Logger.Logger<unknown, string> = Logger.make(format)

/** The host's logger, printing each line to the console; replaces Effect's default logger. */
export const layer = Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(lineLogger))
