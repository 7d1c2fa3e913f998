/**
 * The CLI's failures, by exit code: `CliFailure` (1: the command could not do its work) and `CliUsageError` (2: the
 * command line is wrong). Each carries the one line the operator reads.
 */
import { Schema } from "effect"

export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  message: Schema.String
}) {}

export class CliUsageError extends Schema.TaggedError<CliUsageError>()("CliUsageError", {
  message: Schema.String
}) {}
