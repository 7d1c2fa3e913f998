/**
 * The host's log line: logfmt (`timestamp=… level=… fiber=… message=… key=value`) in which every value is
 * escaped, so nothing a caller controls (a target name, a session key, an upstream body, a stack trace) can
 * break a line in two, forge a line of its own or drive the terminal (ANSI escapes, bidi overrides).
 *
 * `LOG_FORMAT=json` (`layerJson`): one JSON object per line instead (`time`, `level`, `fiber`, `message`,
 * `cause`, `spans`, `annotations`, and `trace_id`/`span_id` of the current span when tracing), with the same
 * characters escaped.
 */
import { Cause, Context, FiberId, FiberRef, FiberRefs, HashMap, Inspectable, List, Logger, Tracer } from "effect"
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

// JSON.stringify leaves these as they are (valid JSON); escaped, a raw log read in a terminal stays inert.
const jsonUnsafe = /[\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g
const jsonEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`

// An annotation as JSON: numbers, booleans and strings as they are, anything else as its string.
const jsonValue = (value: unknown): string | number | boolean =>
  typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value)) ?
    value :
    Inspectable.toStringUnknown(value, 0)

/** Renders one log entry as a single line of JSON. */
export const formatJson = (options: Logger.Logger.Options<unknown>): string => {
  const { annotations, cause, context, date, fiberId, logLevel, message, spans } = options
  const messages = Array.isArray(message) ? message : [message]
  const entry: Record<string, unknown> = {
    time: date.toISOString(),
    level: logLevel.label,
    fiber: FiberId.threadName(fiberId),
    message: messages.map((m) => Inspectable.toStringUnknown(m, 0)).join(" ")
  }
  if (!Cause.isEmptyType(cause)) entry.cause = Cause.pretty(cause, { renderErrorCause: true })
  const span = Context.getOption(FiberRefs.getOrDefault(context, FiberRef.currentContext), Tracer.ParentSpan)
  if (span._tag === "Some") {
    entry.trace_id = span.value.traceId
    entry.span_id = span.value.spanId
  }
  const spanList = List.toArray(spans)
  if (spanList.length > 0) {
    const now = date.getTime()
    const durations: Record<string, number> = {}
    for (const s of spanList) durations[s.label] = now - s.startTime
    entry.spans = durations
  }
  if (HashMap.size(annotations) > 0) {
    const fields: Record<string, unknown> = {}
    for (const [key, value] of HashMap.toEntries(annotations)) fields[key] = jsonValue(value)
    entry.annotations = fields
  }
  return JSON.stringify(entry).replace(jsonUnsafe, jsonEscape)
}

/** The JSON logger, unwritten (for tests and custom sinks). */
export const jsonLogger: Logger.Logger<unknown, string> = Logger.make(formatJson)

/** The host's logger for `LOG_FORMAT=json`, printing each entry as a line of JSON. */
export const layerJson = Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(jsonLogger))

/** The line logger, unwritten (for tests and custom sinks). */
export const lineLogger: Logger.Logger<unknown, string> = Logger.make(format)

/** The host's logger, printing each line to the console; replaces Effect's default logger. */
export const layer = Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(lineLogger))
