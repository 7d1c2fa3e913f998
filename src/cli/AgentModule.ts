/**
 * `serve --agent <file>`: the user's module, loaded with Node's `import()`, hosted as the target.
 *
 * The module's `default` export (or, without one, its `agent` or `target` export) is one of:
 * - an agent: `{ name, run }` and/or `stream` (what `Agent.make` takes or returns);
 * - a target: `{ kind: "agent" | "workflow", name, run, stream }` (a `Target` service value);
 * - a `Layer` providing `Target` and needing nothing (for agents built from config or services).
 * Node loads the file as it would any module: JavaScript (.js/.mjs/.cjs) as is; TypeScript only through a loader
 * the user runs Node with (`node --import tsx …`), or compiled first.
 */
import { Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Agent from "../core/Agent.js"
import { Target } from "../core/Target.js"

export class AgentModuleError extends Schema.TaggedError<AgentModuleError>()("AgentModuleError", {
  message: Schema.String
}) {}

const expected = "export default Agent.make({ name, run }) (or an agent or target object, or a Layer providing " +
  "Target) from the module"

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const isFunction = (value: unknown): value is (...args: ReadonlyArray<never>) => unknown => typeof value === "function"

/** What a module exports, as the target layer; `file` only names it in messages. */
export const fromExports = (
  exports: Record<string, unknown>,
  file: string
): Effect.Effect<Layer.Layer<Target>, AgentModuleError> => {
  const value = exports["default"] ?? exports["agent"] ?? exports["target"]
  if (Layer.isLayer(value)) return Effect.succeed(value as Layer.Layer<Target>)
  if (isRecord(value) && typeof value["name"] === "string" && value["name"] !== "") {
    const run = value["run"]
    const stream = value["stream"]
    if ((value["kind"] === "agent" || value["kind"] === "workflow") && isFunction(run) && isFunction(stream)) {
      return Effect.succeed(Layer.succeed(Target, value as unknown as Target["Type"]))
    }
    if (isFunction(run) || isFunction(stream)) {
      return Effect.succeed(Agent.layer(Agent.make(value as unknown as Agent.MakeOptions)))
    }
  }
  const found = Object.keys(exports).length === 0 ? "no exports" : `exports ${Object.keys(exports).join(", ")}`
  return Effect.fail(new AgentModuleError({ message: `${file} has no agent (${found}): ${expected}` }))
}

/** Loads `file` (relative to the working directory) and returns its agent as the target layer. */
export const load = (file: string): Effect.Effect<Layer.Layer<Target>, AgentModuleError> =>
  Effect.gen(function*() {
    const resolved = Path.resolve(file)
    if (!Fs.existsSync(resolved)) {
      return yield* new AgentModuleError({ message: `agent module ${resolved} does not exist` })
    }
    const exports = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(resolved).href) as Promise<Record<string, unknown>>,
      catch: (cause) => {
        const code = isRecord(cause) ? cause["code"] : undefined
        const hint = code === "ERR_UNKNOWN_FILE_EXTENSION" ?
          " (TypeScript: compile it first, or run Node with a loader: node --import tsx <bin> serve --agent …)" :
          ""
        const text = cause instanceof Error ? cause.message : String(cause)
        return new AgentModuleError({ message: `cannot load agent module ${resolved}: ${text}${hint}` })
      }
    })
    return yield* fromExports(exports, resolved)
  }).pipe(Effect.withSpan("AgentModule.load"))
