/**
 * What an operator reads when the host cannot start: one line naming the setting and what is wrong with it
 * (`configuration error: PORT: Expected a valid port …`), instead of an Effect cause with fiber ids and stack
 * frames. Defects (bugs) are not described here: they keep their stack trace.
 */
import { Cause, ConfigError, Option } from "effect"

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim()

const configProblems = (error: ConfigError.ConfigError): Array<string> => {
  switch (error._op) {
    case "And":
      return [...configProblems(error.left), ...configProblems(error.right)]
    case "Or": {
      // Either alternative would do: the first is what the setting was read as.
      return configProblems(error.left)
    }
    default: {
      const name = error.path.join("_")
      // The environment provider's own wording repeats the name; say it once.
      if (error._op === "MissingData") return [name === "" ? error.message : `${name} is required but not set`]
      return [name === "" ? error.message : `${name}: ${error.message}`]
    }
  }
}

/** One line describing a startup failure (a `ConfigError`, or any error with a message). */
export const describe = (error: unknown): string => {
  if (ConfigError.isConfigError(error)) {
    return `configuration error: ${oneLine([...new Set(configProblems(error))].join("; "))}`
  }
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : undefined
  const message = typeof error === "object" && error !== null && "message" in error ?
    String(error.message) :
    String(error)
  const kind = tag === "HostConfigurationError" ? "configuration error" : "startup failed"
  return `${kind}: ${oneLine(message)}`
}

/** The line for a failed startup's cause, or none when it is a defect or an interruption (reported as they are). */
export const describeCause = (cause: Cause.Cause<unknown>): Option.Option<string> =>
  Option.map(Cause.failureOption(cause), describe)
