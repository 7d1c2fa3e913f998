/**
 * The official Python `openai` client, unmodified, against the composition `npm start` runs: installed into a
 * fresh venv from the machine's local package index (this machine kind reaches no public PyPI; the index is
 * `/opt/pypi/simple`), then a script (test/fixtures/openai_python_client.py) lists
 * models, chats (JSON and streamed with usage), and runs a Responses tool call with `tool_choice: "required"` and
 * its follow-up. Without the local index the test is skipped (its name says which index it looked for).
 */
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Data, Effect, Layer } from "effect"
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Util from "node:util"
import { AgentHost } from "../src/core/AgentHost.js"
import * as Server from "../src/Server.js"
import { freePort } from "./utils/ServerProcess.js"
import * as TempDir from "./utils/TempDir.js"

const exec = Util.promisify(execFile)
const index = "file:///opt/pypi/simple"
const indexDir = index.startsWith("file://") ? index.slice("file://".length) : undefined
const python = ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => Fs.existsSync(p)) ?? "python3"
const available = indexDir === undefined || Fs.existsSync(Path.join(indexDir, "openai"))

class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

const run = (file: string, args: ReadonlyArray<string>, timeout: number) =>
  Effect.tryPromise({
    try: () =>
      exec(file, args, {
        timeout,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1", PYTHONDONTWRITEBYTECODE: "1" }
      }),
    catch: (error) => {
      const e = error as { stdout?: string; stderr?: string; message?: string }
      return new CommandFailed({
        message: `${file} ${args.join(" ")}: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`
      })
    }
  })

const hostLayer = Layer.unwrapEffect(Effect.map(freePort, (port) =>
  Server.layerFromEnv.pipe(
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromMap(
          new Map(Object.entries({
            HOST: "127.0.0.1",
            PORT: String(port),
            AGENT_HOST_STATE: "memory",
            AGENT_HOST_WEBCHAT: "false",
            LOG_LEVEL: "warn"
          }))
        )
      )
    )
  )))

describe.skipIf(!available)(`the Python openai client against npm start (index ${index})`, () => {
  layer(hostLayer, { timeout: 60_000 })((it) => {
    it.scoped(
      "models, chat (JSON, stream with usage), a required tool call and its follow-up; request ids set",
      () =>
        Effect.gen(function*() {
          const host = yield* AgentHost
          const venv = yield* TempDir.make("agent-host-pyvenv-")
          yield* run(python, ["-m", "venv", venv], 120_000)
          // Only the local index: the default (public PyPI) is unreachable here and pip would retry it.
          yield* run(
            Path.join(venv, "bin/pip"),
            ["install", "--quiet", "--index-url", index, "--no-cache-dir", "openai"],
            240_000
          )
          const { stdout } = yield* run(
            Path.join(venv, "bin/python"),
            [Path.join(import.meta.dirname, "fixtures/openai_python_client.py"), `${host.url}/v1`],
            60_000
          )
          const seen = JSON.parse(stdout) as Record<string, any>
          assert.isAbove(seen["models"].length, 0)
          assert.match(seen["chat_request_id"], /^req_/)
          assert.include(seen["chat_text"], "hello from python")
          assert.strictEqual(seen["chat_finish"], "stop")
          assert.include(seen["stream_text"], "stream from python")
          assert.isAbove(seen["stream_usage"], 0)
          assert.match(seen["response_request_id"], /^req_/)
          assert.strictEqual(seen["tool_call"]?.name, "get_weather")
          assert.strictEqual(seen["tool_call"]?.arguments?.city, "Paris")
          assert.include(seen["follow_text"], "sunny, 21C")
        }),
      { timeout: 420_000 }
    )
  })
})
