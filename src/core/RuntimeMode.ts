/**
 * Runtime modes: `long_running` (a server that lives for days) or `ephemeral` (serverless: Foundry hosting,
 * Azure Functions, AWS Lambda, Cloud Run), where in-process background work may be frozen or lost between
 * requests. Detected from the platform's environment; `AGENT_HOST_RUNTIME_MODE` wins.
 */
import { Config, Effect, Option } from "effect"
import { HostConfigurationError } from "../domain/Errors.js"

export type RuntimeMode = "long_running" | "ephemeral"

export interface Detected {
  readonly mode: RuntimeMode
  /** `explicit`, `auto-detected from <VAR>` or `auto-detected default`. */
  readonly source: string
}

/** The variables that mark an ephemeral platform, first match wins. */
export const ephemeralMarkers = [
  "FOUNDRY_HOSTING_ENVIRONMENT",
  "AZURE_FUNCTIONS_ENVIRONMENT",
  "AWS_LAMBDA_FUNCTION_NAME",
  "K_SERVICE"
] as const

const nonEmpty = (name: string) =>
  Config.option(Config.string(name)).pipe(Config.map(Option.filter((value) => value.trim().length > 0)))

export const config: Config.Config<Detected> = Config.all({
  explicit: Config.option(Config.literal("long_running", "ephemeral")("AGENT_HOST_RUNTIME_MODE")),
  markers: Config.all(ephemeralMarkers.map(nonEmpty))
}).pipe(Config.map(({ explicit, markers }): Detected => {
  if (Option.isSome(explicit)) return { mode: explicit.value, source: "explicit" }
  const index = markers.findIndex(Option.isSome)
  return index === -1 ?
    { mode: "long_running", source: "auto-detected default" } :
    { mode: "ephemeral", source: `auto-detected from ${ephemeralMarkers[index]}` }
}))

export const allowInProcessRunner: Config.Config<boolean> = Config.boolean("AGENT_HOST_ALLOW_IN_PROCESS_RUNNER").pipe(
  Config.withDefault(false)
)

/**
 * Refuses an in-process (non-durable) task runner in ephemeral mode unless explicitly allowed, in which case it
 * warns: pushes scheduled there can be lost when the platform freezes or recycles the instance.
 */
export const checkInProcessRunner = Effect.gen(function*() {
  const detected = yield* config
  if (detected.mode !== "ephemeral") return detected
  if (!(yield* allowInProcessRunner)) {
    return yield* new HostConfigurationError({
      message: `runtime mode is ephemeral (${detected.source}) and the task runner is in-process: pushes would be ` +
        `lost when the instance is frozen or recycled. Use the SQLite task runner, or set ` +
        `AGENT_HOST_ALLOW_IN_PROCESS_RUNNER=true to accept that risk`
    })
  }
  yield* Effect.logWarning(
    `runtime mode is ephemeral (${detected.source}) with the in-process task runner ` +
      `(AGENT_HOST_ALLOW_IN_PROCESS_RUNNER=true): pending pushes are lost if the instance is recycled`
  )
  return detected
})
