#!/usr/bin/env node
/**
 * The package's `bin`: `effect-agent-host <command>` (see `Cli`). Exits with the code the command answers; on
 * SIGINT/SIGTERM (`serve`), after the host has shut down.
 */
// Deep imports: the package index would load all of @effect/platform-node (undici included) for every command.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit } from "effect"
import * as Cli from "./Cli.js"

Cli.run(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disablePrettyLogger: true,
    disableErrorReporting: true,
    teardown: (exit, onExit) =>
      onExit(Exit.isSuccess(exit) ? (exit.value as number) : Cause.isInterruptedOnly(exit.cause) ? 0 : 1)
  })
)
