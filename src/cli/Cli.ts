/**
 * `effect-agent-host`: the command line (on @effect/cli). `serve` runs the host as `npm start` does (optionally
 * with the agent of a user module, on another port); the admin commands (`tasks`, `state`, `links`, `responses`)
 * work on a state dir (see `StateAccess`). `--help` on every command.
 *
 * Exit codes: 0 done; 1 the command failed (one line on stderr says why); 2 the command line is wrong (the usage
 * problem on stderr, no stack trace).
 */
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import type { CliApp } from "@effect/cli"
import type { Duration } from "effect"
import { Cause, ConfigProvider, Effect, Either, HashSet, Logger, LogLevel, Option } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type * as AdminModule from "./Admin.js"
import { CliFailure, CliUsageError } from "./CliErrors.js"
import type { IdentityRef } from "./Format.js"
import { parseDuration, parseIdentity } from "./Format.js"

export const executable = "effect-agent-host"

// TaskStore.TaskStatus's literals (a test checks), written out so `--help` does not load the task store.
export const taskStatuses = ["pending", "running", "succeeded", "failed", "cancelled"] as const

// ---------------------------------------------------------------------------------------------------------------
// Options

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

const fromEither = <A>(either: Either.Either<A, string>): Effect.Effect<A, ValidationError.ValidationError> =>
  Either.match(either, { onLeft: (e) => Effect.fail(invalid(e)), onRight: Effect.succeed })

// Args report a bad value as help text (they add the argument's name).
const argFromEither = <A>(either: Either.Either<A, string>): Effect.Effect<A, HelpDoc.HelpDoc> =>
  Either.match(either, { onLeft: (e) => Effect.fail(HelpDoc.p(e)), onRight: Effect.succeed })

const stateDir = Options.text("state-dir").pipe(
  Options.withPseudoName("dir"),
  Options.withDescription("the host's state dir (default: AGENT_HOST_STATE_DIR, else ./.agent-host)"),
  Options.optional
)

const json = Options.boolean("json").pipe(Options.withDescription("print JSON instead of a table"))

const taskId = Args.text({ name: "task-id" }).pipe(Args.withDescription("the task's id (see `tasks list`)"))

const identityArg = Args.text({ name: "identity" }).pipe(
  Args.withDescription("a channel identity: <channel>:<native id>, e.g. telegram:123456789"),
  Args.mapEffect((text) => argFromEither(parseIdentity(text)))
)

/**
 * `flags` over `base`: a setting given by a flag is read from the flags, every other one from `base` alone, so a bad
 * setting is reported as itself (`ConfigProvider.orElse` would report it as "missing from the flags" too).
 */
const withFlags = (
  flags: Map<string, string>,
  base: ConfigProvider.ConfigProvider
): ConfigProvider.ConfigProvider => {
  const given = ConfigProvider.fromMap(flags, { pathDelim: "_", seqDelim: "," }).flattened
  return ConfigProvider.fromFlat(ConfigProvider.makeFlat({
    load: (path, primitive, split) => (flags.has(path.join("_")) ? given : base.flattened).load(path, primitive, split),
    enumerateChildren: (path) =>
      Effect.zipWith(
        given.enumerateChildren(path),
        base.flattened.enumerateChildren(path),
        (a, b) => HashSet.union(a, b)
      ),
    patch: base.flattened.patch
  }))
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers (imported when run, so `--help` loads neither the host nor SQLite)

const admin = () => import("./Admin.js")
const access = () => import("./StateAccess.js")

/** Admin commands log only warnings, to stderr: stdout holds their result. */
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )

/** Runs `use` with the state dir the options name. */
const onStateDir = <A, E>(
  flag: Option.Option<string>,
  use: (dir: string, Admin: typeof AdminModule) => Effect.Effect<A, E>
) =>
  quiet(Effect.gen(function*() {
    const StateAccess = yield* Effect.promise(access)
    const dir = yield* StateAccess.resolveDir(flag)
    return yield* use(dir, yield* Effect.promise(admin))
  }))

// ---------------------------------------------------------------------------------------------------------------
// serve

const serve = Command.make(
  "serve",
  {
    agent: Options.file("agent", { exists: "yes" }).pipe(
      Options.withDescription(
        "a module whose default export is the agent (Agent.make({ name, run }), a target, or a Layer providing " +
          "Target); JavaScript, or TypeScript under a loader (node --import tsx)"
      ),
      Options.optional
    ),
    port: Options.integer("port").pipe(
      Options.withPseudoName("port"),
      Options.withDescription("the port to listen on (overrides PORT)"),
      Options.mapEffect((port) =>
        port >= 0 && port <= 65535 ? Effect.succeed(port) : Effect.fail(invalid(`--port must be 0 to 65535`))
      ),
      Options.optional
    ),
    stateDir
  },
  ({ agent, port, stateDir }) =>
    Effect.gen(function*() {
      const [Launch, Server] = yield* Effect.promise(() => Promise.all([import("./Launch.js"), import("../Server.js")]))
      const target = Option.isSome(agent) ?
        yield* Effect.flatMap(
          Effect.promise(() => import("./AgentModule.js")),
          (AgentModule) => AgentModule.load(agent.value)
        ).pipe(Effect.mapError((e) => new CliFailure({ message: e.message }))) :
        Server.targetFromEnv
      // The flags win over the environment; everything else is read from it as `npm start` reads it.
      const flags = new Map<string, string>()
      if (Option.isSome(port)) flags.set("PORT", String(port.value))
      if (Option.isSome(stateDir)) flags.set("AGENT_HOST_STATE_DIR", stateDir.value)
      if (flags.size === 0) return yield* Launch.launch(target)
      return yield* Effect.configProviderWith((environment) =>
        Launch.launch(target).pipe(Effect.withConfigProvider(withFlags(flags, environment)))
      )
    })
).pipe(Command.withDescription("run the host: what `npm start` runs, optionally with your agent"))

// ---------------------------------------------------------------------------------------------------------------
// tasks

const tasksList = Command.make(
  "list",
  {
    status: Options.choice("status", taskStatuses).pipe(
      Options.withDescription("only tasks with this status (failed: the dead letters)"),
      Options.optional
    ),
    limit: Options.integer("limit").pipe(
      Options.withDescription("at most this many tasks, most recently updated first (1 to 1000)"),
      Options.mapEffect((n) =>
        n >= 1 && n <= 1000 ? Effect.succeed(n) : Effect.fail(invalid("--limit must be 1 to 1000"))
      ),
      Options.withDefault(100)
    ),
    json,
    stateDir
  },
  ({ json, limit, stateDir, status }) =>
    onStateDir(stateDir, (dir, Admin) => Admin.tasksList({ dir, status, limit, json }))
).pipe(Command.withDescription("list durable tasks (pushes), most recently updated first; read-only"))

const tasksReplay = Command.make(
  "replay",
  { id: taskId, stateDir },
  ({ id, stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.tasksReplay({ dir, id }))
).pipe(Command.withDescription(
  "run a failed (dead-letter) or cancelled task again, with a fresh retry budget, when the host next starts"
))

const tasksCancel = Command.make(
  "cancel",
  { id: taskId, stateDir },
  ({ id, stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.tasksCancel({ dir, id }))
).pipe(Command.withDescription("cancel a task that has not finished"))

const needsSubcommand = (command: string, subcommands: ReadonlyArray<string>) => () =>
  Effect.fail(
    new CliUsageError({ message: `${command} needs a subcommand: ${subcommands.join(", ")}` })
  )

const tasks = Command.make("tasks", {}, needsSubcommand(`${executable} tasks`, ["list", "replay", "cancel"])).pipe(
  Command.withDescription("the durable task runner's tasks (what `GET /admin/tasks` serves)"),
  Command.withSubcommands([tasksList, tasksReplay, tasksCancel])
)

// ---------------------------------------------------------------------------------------------------------------
// state

const stateMigrate = Command.make(
  "migrate",
  { stateDir },
  ({ stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.stateMigrate({ dir }))
).pipe(Command.withDescription("create the state database or bring its schema up to date (idempotent)"))

const stateVacuum = Command.make(
  "vacuum",
  { stateDir },
  ({ stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.stateVacuum({ dir }))
).pipe(Command.withDescription("compact the state database file"))

const stateExport = Command.make(
  "export",
  {
    out: Options.text("out").pipe(
      Options.withPseudoName("file"),
      Options.withDescription("write to this file (mode 0600) instead of stdout"),
      Options.optional
    ),
    stateDir
  },
  ({ out, stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.stateExport({ dir, out }))
).pipe(Command.withDescription(
  "every table as JSON lines ({\"table\", \"row\"}), generated keys left out; read-only, a consistent snapshot"
))

const state = Command.make("state", {}, needsSubcommand(`${executable} state`, ["migrate", "vacuum", "export"])).pipe(
  Command.withDescription("the state database (<state dir>/state.db)"),
  Command.withSubcommands([stateMigrate, stateVacuum, stateExport])
)

// ---------------------------------------------------------------------------------------------------------------
// links

const linksList = Command.make(
  "list",
  {
    identity: Options.text("identity").pipe(
      Options.withPseudoName("channel:id"),
      Options.withDescription("only the links of the person this identity (<channel>:<native id>) is linked to"),
      Options.mapEffect((text) => fromEither<IdentityRef>(parseIdentity(text))),
      Options.optional
    ),
    json,
    stateDir
  },
  ({ identity, json, stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.linksList({ dir, identity, json }))
).pipe(Command.withDescription("identity links (channel identity -> person), oldest first; read-only"))

const linksRemove = Command.make(
  "remove",
  { identity: identityArg, stateDir },
  ({ identity, stateDir }) => onStateDir(stateDir, (dir, Admin) => Admin.linksRemove({ dir, identity }))
).pipe(Command.withDescription("unlink a channel identity (its next turn is asked to link again)"))

const links = Command.make("links", {}, needsSubcommand(`${executable} links`, ["list", "remove"])).pipe(
  Command.withDescription("identity links made by sign-in (OIDC)"),
  Command.withSubcommands([linksList, linksRemove])
)

// ---------------------------------------------------------------------------------------------------------------
// responses

const responsesPrune = Command.make(
  "prune",
  {
    olderThan: Options.text("older-than").pipe(
      Options.withPseudoName("duration"),
      Options.withDescription(
        "delete stored responses created longer ago than this: 90s, 30m, 12h, 7d, 2w (default: " +
          "AGENT_HOST_RESPONSE_RETENTION, else 30 days)"
      ),
      Options.mapEffect((text) => fromEither<Duration.Duration>(parseDuration(text))),
      Options.optional
    ),
    stateDir
  },
  ({ olderThan, stateDir }) =>
    onStateDir(stateDir, (dir, Admin) =>
      Effect.flatMap(
        Option.match(olderThan, {
          onNone: () => Admin.defaultResponseAge,
          onSome: Effect.succeed
        }),
        (age) => Admin.responsesPrune({ dir, olderThan: age })
      ))
).pipe(Command.withDescription("delete old stored Responses API objects (with their events)"))

const responses = Command.make("responses", {}, needsSubcommand(`${executable} responses`, ["prune"])).pipe(
  Command.withDescription("stored Responses API objects"),
  Command.withSubcommands([responsesPrune])
)

// ---------------------------------------------------------------------------------------------------------------
// The app

export const command = Command.make(
  executable,
  {},
  needsSubcommand(executable, ["serve", "tasks", "state", "links", "responses"])
).pipe(
  Command.withDescription("host one agent over many channels, and administer its state"),
  Command.withSubcommands([serve, tasks, state, links, responses])
)

/** The package's version (from its package.json, found from this file in src/ or in dist/esm/). */
const version = (): string => {
  for (let dir = import.meta.dirname;; dir = Path.dirname(dir)) {
    try {
      const manifest = JSON.parse(Fs.readFileSync(Path.join(dir, "package.json"), "utf8")) as {
        readonly name?: string
        readonly version?: string
      }
      if (manifest.name === "effect-agent-host" && manifest.version !== undefined) return manifest.version
    } catch {
      // not here
    }
    if (Path.dirname(dir) === dir) return "0.0.0"
  }
}

const hint = `run \`${executable} --help\` (or \`${executable} <command> --help\`) for usage`

/**
 * Runs the command line `argv` (`process.argv`: node, the script, then the arguments) and answers the exit code.
 * Failures are printed here, one line each; a defect (a bug) is logged with its cause.
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number, never, CliApp.CliApp.Environment> =>
  Command.run(command, { name: executable, version: version(), executable })(argv).pipe(
    Effect.as(0),
    Effect.catchAll((error): Effect.Effect<number> => {
      if (ValidationError.isValidationError(error)) {
        // @effect/cli printed the problem already.
        return Effect.as(Effect.sync(() => process.stderr.write(`${hint}\n`)), 2)
      }
      switch (error._tag) {
        case "CliUsageError":
          return Effect.as(Effect.sync(() => process.stderr.write(`${error.message}\n${hint}\n`)), 2)
        case "StartupFailed":
          return Effect.succeed(1) // printed by Launch
        default:
          return Effect.as(Effect.sync(() => process.stderr.write(`error: ${error.message}\n`)), 1)
      }
    }),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ?
        Effect.failCause(cause) :
        Effect.as(Effect.logError(`${executable} failed`, cause), 1)
    )
  )
