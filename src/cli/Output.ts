/**
 * Where commands print: results to stdout (or a file), notes and errors to stderr. A sink's writes wait for the
 * stream to drain, so a large export piped into a slow reader does not pile up in memory.
 */
import { Console, Effect } from "effect"
import * as Fs from "node:fs"
import type { Writable } from "node:stream"
import { CliFailure } from "./CliErrors.js"

export interface Sink {
  readonly write: (text: string) => Effect.Effect<void, CliFailure>
  readonly close: Effect.Effect<void, CliFailure>
}

const sinkOf = (stream: Writable, name: string, closeStream: boolean): Sink => {
  const failure = (cause: unknown) =>
    new CliFailure({ message: `cannot write ${name}: ${cause instanceof Error ? cause.message : String(cause)}` })
  return {
    write: (text) =>
      Effect.async<void, CliFailure>((resume) => {
        const onError = (cause: unknown) => resume(Effect.fail(failure(cause)))
        stream.once("error", onError)
        const done = () => {
          stream.off("error", onError)
          resume(Effect.void)
        }
        if (stream.write(text)) done()
        else stream.once("drain", done)
      }),
    close: closeStream ?
      Effect.async<void, CliFailure>((resume) => {
        stream.end(() => resume(Effect.void))
      }) :
      Effect.void
  }
}

export const stdout: Sink = sinkOf(process.stdout, "to stdout", false)

/** A new file (replaced if it exists), readable by its owner only. */
export const file = (path: string): Effect.Effect<Sink, CliFailure> =>
  Effect.try({
    try: () => {
      const fd = Fs.openSync(path, "w", 0o600)
      return sinkOf(Fs.createWriteStream(path, { fd }), path, true)
    },
    catch: (cause) =>
      new CliFailure({ message: `cannot write ${path}: ${cause instanceof Error ? cause.message : String(cause)}` })
  })

/** One line of a command's result, through Effect's `Console` (stdout; tests capture it). */
export const line = (text: string): Effect.Effect<void> => Console.log(text)

export const errorLine = (text: string): Effect.Effect<void> =>
  Effect.sync(() => void process.stderr.write(`${text}\n`))
