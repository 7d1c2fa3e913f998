/**
 * The CLI in process: parsing (durations, identities), the export's secret filter, the agent module contract, the
 * exit codes of wrong command lines (2), and the admin commands on a real state dir filled by the host's stores
 * (their output captured from Effect's Console, their changes read back from the database). Cli.process.test.ts
 * runs the built bin.
 */
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import type { Layer } from "effect"
import { Duration, Effect, Either, Stream } from "effect"
import * as Admin from "../src/cli/Admin.js"
import * as AgentModule from "../src/cli/AgentModule.js"
import * as Cli from "../src/cli/Cli.js"
import { parseDuration, parseIdentity, table } from "../src/cli/Format.js"
import { TaskStatus } from "../src/delivery/TaskStore.js"
import { Agent, Target } from "../src/index.js"
import { populate, query } from "./utils/CliState.js"
import * as TempDir from "./utils/TempDir.js"

const millis = (text: string) => Either.map(parseDuration(text), Duration.toMillis)

describe("CLI parsing", () => {
  it("durations: a number with a unit, combined, or Effect's own words; positive only", () => {
    assert.deepStrictEqual(millis("7d"), Either.right(7 * 86_400_000))
    assert.deepStrictEqual(millis("1d12h"), Either.right(36 * 3_600_000))
    assert.deepStrictEqual(millis("90s"), Either.right(90_000))
    assert.deepStrictEqual(millis("500ms"), Either.right(500))
    assert.deepStrictEqual(millis("2w"), Either.right(14 * 86_400_000))
    assert.deepStrictEqual(millis("1.5h"), Either.right(5_400_000))
    assert.deepStrictEqual(millis("7 days"), Either.right(7 * 86_400_000))
    for (const bad of ["7", "7x", "0d", "-1d", "", "d", "7d junk", "Infinity"]) {
      assert.isTrue(Either.isLeft(parseDuration(bad)), bad)
    }
    assert.include(Either.getLeft(parseDuration("7")).pipe((o) => o._tag === "Some" ? o.value : ""), "not a duration")
  })

  it("identities: <channel>:<native id>, the id may hold colons", () => {
    assert.deepStrictEqual(parseIdentity("telegram:42"), Either.right({ channel: "telegram", nativeId: "42" }))
    assert.deepStrictEqual(
      parseIdentity("activity:29:1abc"),
      Either.right({ channel: "activity", nativeId: "29:1abc" })
    )
    for (const bad of ["telegram", ":42", "telegram:", ""]) assert.isTrue(Either.isLeft(parseIdentity(bad)), bad)
  })

  it("the export leaves out generated keys, and only those", () => {
    assert.isTrue(Admin.isSecretCursor("auth:link-state-key"))
    assert.isTrue(Admin.isSecretCursor("responses.compaction_key"))
    assert.isFalse(Admin.isSecretCursor("telegram:offset"))
    assert.isFalse(Admin.isSecretCursor("a2a:owner-1:index"))
    assert.isFalse(Admin.isSecretCursor("monkey"))
  })

  it("tables align columns and keep each row on one line", () => {
    assert.strictEqual(table(["A", "LONG"], [["xyz", "1\n2"], ["q", ""]]), "A    LONG\nxyz  1 2\nq")
  })

  it("--status offers exactly the task store's statuses", () => {
    assert.deepStrictEqual([...Cli.taskStatuses], [...TaskStatus.literals])
  })
})

const hostedName = (layer: Layer.Layer<Target.Target>) =>
  Effect.map(Effect.provide(Target.Target, layer), (t) => t.name)

describe("the agent module contract", () => {
  it.effect("default export: an agent, a target, a Layer providing Target; or else a message saying what to export", () =>
    Effect.gen(function*() {
      const agent = Agent.make({ name: "a", run: () => Effect.succeed({ messages: [] }) })
      assert.strictEqual(yield* hostedName(yield* AgentModule.fromExports({ default: agent }, "m.js")), "a")
      // The options Agent.make takes, not yet made into an agent.
      const options = { name: "b", stream: () => Stream.empty }
      assert.strictEqual(yield* hostedName(yield* AgentModule.fromExports({ agent: options }, "m.js")), "b")
      const target = { ...Agent.toTarget(agent), name: "c", kind: "workflow" as const }
      assert.strictEqual(yield* hostedName(yield* AgentModule.fromExports({ target }, "m.js")), "c")
      const layer = Agent.layer({ ...agent, name: "d" })
      assert.strictEqual(yield* hostedName(yield* AgentModule.fromExports({ default: layer }, "m.js")), "d")

      const none = yield* Effect.flip(AgentModule.fromExports({ helper: 1 }, "m.js"))
      assert.strictEqual(
        none.message,
        "m.js has no agent (exports helper): export default Agent.make({ name, run }) (or an agent or target object, " +
          "or a Layer providing Target) from the module"
      )
      const missing = yield* Effect.flip(AgentModule.load("/nonexistent/agent.mjs"))
      assert.strictEqual(missing.message, "agent module /nonexistent/agent.mjs does not exist")
    }))
})

const exitCode = (...args: ReadonlyArray<string>) =>
  Effect.provide(Cli.run(["node", "effect-agent-host", ...args]), NodeContext.layer)

describe("command lines", () => {
  it.effect("a wrong command line exits 2; an unknown state dir fails with 1", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* exitCode("tasks", "list", "--limit", "0"), 2)
      assert.strictEqual(yield* exitCode("tasks", "list", "--status", "dead"), 2)
      assert.strictEqual(yield* exitCode("tasks", "replay"), 2)
      assert.strictEqual(yield* exitCode("links", "remove", "no-colon"), 2)
      assert.strictEqual(yield* exitCode("responses", "prune", "--older-than", "soon"), 2)
      assert.strictEqual(yield* exitCode("serve", "--port", "70000"), 2)
      assert.strictEqual(yield* exitCode("frobnicate"), 2)
      assert.strictEqual(yield* exitCode("state"), 2)
      assert.strictEqual(yield* exitCode(), 2)
      assert.strictEqual(yield* exitCode("tasks", "list", "--state-dir", "/nonexistent/agent-host-state"), 1)
      assert.strictEqual(yield* exitCode("state", "export", "--help"), 0)
    }))
})

/** Runs a command line in process: its exit code and the lines it printed to stdout. */
const runCli = (...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const console = yield* Effect.console
    const capture: typeof console = {
      ...console,
      log: (...parts: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(parts.map(String).join(" ")))
    }
    const code = yield* exitCode(...args).pipe(Effect.withConsole(capture))
    return { code, lines }
  })

describe("admin commands on a real state dir", () => {
  it.scopedLive(
    "tasks cancel, links list/remove, responses prune, vacuum, migrate change what they say",
    () =>
      Effect.gen(function*() {
        const dir = yield* TempDir.make("agent-host-cli-")
        yield* populate(dir)
        const at = ["--state-dir", dir]

        assert.deepStrictEqual(yield* runCli("tasks", "cancel", "task_pending", ...at), {
          code: 0,
          lines: ["task task_pending cancelled (was pending)"]
        })
        assert.strictEqual((yield* runCli("tasks", "cancel", "task_done", ...at)).code, 1)
        assert.strictEqual((yield* runCli("tasks", "replay", "task_done", ...at)).code, 1)
        assert.strictEqual((yield* runCli("tasks", "cancel", "task_nope", ...at)).code, 1)
        assert.deepStrictEqual(
          query<{ id: string; status: string }>(dir, "SELECT id, status FROM agent_host_tasks ORDER BY id"),
          [
            { id: "task_done", status: "succeeded" },
            { id: "task_failed", status: "failed" },
            { id: "task_pending", status: "cancelled" }
          ]
        )
        const tasks = yield* runCli("tasks", "list", ...at)
        assert.match(tasks.lines[0]!, /^ID\s+NAME\s+STATUS\s+ATTEMPTS\s+UPDATED\s+LAST ERROR/)
        assert.strictEqual(tasks.lines[0]!.split("\n").length, 4)

        // The person behind telegram:42: both of their identities.
        const person = yield* runCli("links", "list", "--identity", "telegram:42", "--json", ...at)
        assert.strictEqual(person.code, 0)
        const links = (JSON.parse(person.lines[0]!) as { links: ReadonlyArray<{ identity: string; subject: string }> })
          .links
        assert.sameMembers(links.map((l) => l.identity), ["telegram:42", "activity:29:abc"])
        assert.deepStrictEqual(yield* runCli("links", "remove", "activity:29:abc", ...at), {
          code: 0,
          lines: ["removed the link of activity:29:abc (subject sub-1)"]
        })
        assert.strictEqual((yield* runCli("links", "remove", "activity:29:abc", ...at)).code, 1)
        const table = (yield* runCli("links", "list", ...at)).lines[0]!.split("\n")
        assert.match(table[0]!, /^IDENTITY\s+SUBJECT\s+ISOLATION KEY\s+LINKED$/)
        assert.deepStrictEqual(table.slice(1).map((l) => l.split(/\s+/)[0]).sort(), ["discord:7", "telegram:42"])

        const pruned = yield* runCli("responses", "prune", "--older-than", "7d", ...at)
        assert.strictEqual(pruned.code, 0)
        assert.match(pruned.lines[0]!, /^pruned 1 stored response\(s\) created before .* \(older than 7d\)$/)
        assert.deepStrictEqual(query<{ id: string }>(dir, "SELECT id FROM responses"), [{ id: "resp_new" }])

        const vacuumed = yield* runCli("state", "vacuum", ...at)
        assert.strictEqual(vacuumed.code, 0)
        assert.match(vacuumed.lines[0]!, /^vacuumed .*state\.db: \d+ -> \d+ bytes$/)
        // Idempotent: the host's stores applied every migration already.
        const migrated = yield* runCli("state", "migrate", ...at)
        assert.match(migrated.lines[0]!, /: schema version \d+ \(applied 0 migration\(s\)\)$/)
        // A fresh dir: created, every migration applied.
        const fresh = `${dir}/fresh`
        assert.match(
          (yield* runCli("state", "migrate", "--state-dir", fresh)).lines[0]!,
          /\(applied [1-9]\d* migration/
        )
        assert.deepStrictEqual(query<{ n: number }>(fresh, "SELECT count(*) AS n FROM agent_host_tasks"), [{ n: 0 }])
      }),
    60_000
  )
})
