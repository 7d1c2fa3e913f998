/**
 * One contract for every CheckpointStore (memory, file system, SQLite, Postgres), and the file-system store's guard
 * against isolation keys that would escape its root.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer, Logger, Option, Redacted, TestClock } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Time from "../src/domain/Time.js"
import * as CheckpointStore from "../src/state/CheckpointStore.js"
import * as PgCheckpointStore from "../src/state/postgres/PgCheckpointStore.js"
import * as SqliteCheckpointStore from "../src/state/sqlite/SqliteCheckpointStore.js"
import * as Postgres from "./utils/Postgres.js"
import * as TempDir from "./utils/TempDir.js"

const bytes = (...values: ReadonlyArray<number>) => new Uint8Array(values)

const layerFsTemp = Layer.unwrapScoped(
  Effect.map(TempDir.make(), (dir) => CheckpointStore.layerFileSystem(Path.join(dir, "checkpoints")))
)
const layerSqliteTemp = Layer.unwrapScoped(
  Effect.map(TempDir.make(), (directory) => SqliteCheckpointStore.layer({ directory }))
)

const layerPgFresh = Layer.unwrapScoped(
  Effect.map(Postgres.database, (url) => PgCheckpointStore.layer({ url: Redacted.make(url), maxConnections: 2 }))
)

const contract = (name: string, makeLayer: () => Layer.Layer<CheckpointStore.CheckpointStore, unknown>) =>
  describe(`CheckpointStore contract: ${name}`, () => {
    it.scoped("saves, lists newest first, loads latest and by id", () =>
      Effect.gen(function*() {
        const store = yield* CheckpointStore.CheckpointStore
        assert.isTrue(Option.isNone(yield* store.latest("telegram:42", "flow")))
        assert.deepStrictEqual(yield* store.list("telegram:42", "flow"), [])
        yield* TestClock.setTime(1000)
        yield* store.save("telegram:42", "flow", "c1", bytes(1, 2, 3))
        yield* TestClock.setTime(2000)
        yield* store.save("telegram:42", "flow", "c2", bytes(4))
        // same millisecond: save order still decides
        yield* store.save("telegram:42", "flow", "c3", bytes())
        yield* store.save("telegram:42", "other flow/..", "x", bytes(9))
        yield* store.save("telegram:43", "flow", "y", bytes(8))

        assert.deepStrictEqual(yield* store.list("telegram:42", "flow"), [
          { id: "c3", createdAt: Time.fromMillis(2000) },
          { id: "c2", createdAt: Time.fromMillis(2000) },
          { id: "c1", createdAt: Time.fromMillis(1000) }
        ])
        const latest = yield* store.latest("telegram:42", "flow")
        assert.deepStrictEqual(
          Option.map(latest, (c) => [c.id, c.isolationKey, c.workflowName, [...c.data]]),
          Option.some(["c3", "telegram:42", "flow", []])
        )
        const first = yield* store.load("telegram:42", "flow", "c1")
        assert.deepStrictEqual(Option.map(first, (c) => [c.createdAt, [...c.data]]), Option.some([1000, [1, 2, 3]]))
        assert.isTrue(Option.isNone(yield* store.load("telegram:42", "flow", "nope")))
        assert.deepStrictEqual(
          Option.map(yield* store.latest("telegram:42", "other flow/.."), (c) => [...c.data]),
          Option.some([9])
        )
        assert.deepStrictEqual((yield* store.list("telegram:43", "flow")).map((c) => c.id), ["y"])

        // saving an existing id replaces it and makes it the latest
        yield* TestClock.setTime(3000)
        yield* store.save("telegram:42", "flow", "c1", bytes(7))
        assert.deepStrictEqual((yield* store.list("telegram:42", "flow")).map((c) => c.id), ["c1", "c3", "c2"])
        assert.deepStrictEqual(
          Option.map(yield* store.latest("telegram:42", "flow"), (c) => [...c.data]),
          Option.some([7])
        )
      }).pipe(Effect.provide(makeLayer())))
  })

contract("memory", () => CheckpointStore.layerMemory)
contract("file system", () => layerFsTemp)
contract("sqlite", () => layerSqliteTemp)
contract("postgres", () => layerPgFresh)

const rejected = [
  "",
  ".",
  "..",
  "...",
  "../etc",
  "../../etc/passwd",
  "a/b",
  "a\\b",
  "a\u0000b",
  "/abs/path",
  "\\\\server\\share",
  "C:/foo",
  "C:foo",
  "C:",
  "x".repeat(256)
]
const accepted = [
  "alice",
  "telegram:42",
  "entra:abc-def_0123",
  "responses:user.name",
  "a:1",
  "..hidden-but-not-only-dots",
  "k".repeat(200)
]

describe("CheckpointStore file-system keys", () => {
  it("rejects every key that could leave the root, accepts legit keys", () => {
    for (const key of rejected) {
      assert.isDefined(CheckpointStore.keyProblem(key, { windows: false }), `should reject ${JSON.stringify(key)}`)
      assert.isDefined(
        CheckpointStore.keyProblem(key, { windows: true }),
        `should reject on Windows ${JSON.stringify(key)}`
      )
    }
    for (const key of accepted) {
      assert.isUndefined(CheckpointStore.keyProblem(key, { windows: false }), `should accept ${JSON.stringify(key)}`)
    }
    // on Windows a single letter before ':' is a drive, whatever its case
    assert.isDefined(CheckpointStore.keyProblem("a:1", { windows: true }))
    assert.isUndefined(CheckpointStore.keyProblem("telegram:42", { windows: true }))
  })

  it.scoped("a rejected key fails with CheckpointKeyRejected, writes nothing, and orSkip keeps the request going", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const root = Path.join(dir, "root")
      const store = yield* CheckpointStore.makeFileSystem(root)
      for (const key of rejected) {
        const result = yield* Effect.either(store.save(key, "flow", "c", bytes(1)))
        assert.isTrue(Either.isLeft(result) && result.left._tag === "CheckpointKeyRejected", JSON.stringify(key))
        assert.isTrue(Either.isLeft(yield* Effect.either(store.latest(key, "flow"))))
      }
      // nothing was written anywhere: not in the root, not next to it
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
      for (const key of accepted) {
        yield* store.save(key, "flow", "c", bytes(1))
        assert.isTrue(Option.isSome(yield* store.latest(key, "flow")), key)
      }
      assert.sameMembers(Fs.readdirSync(root), accepted)

      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      const outcome = yield* CheckpointStore.orSkip(
        Effect.as(store.save("../escape", "flow", "c", bytes(1)), "saved"),
        "skipped"
      ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      assert.strictEqual(outcome, "skipped")
      assert.strictEqual(logs.length, 1)
      assert.include(logs[0], "Checkpointing is skipped")
    }))

  it.scoped("a symlink planted in the root cannot carry writes outside it", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const root = Path.join(dir, "root")
      const outside = Path.join(dir, "outside")
      Fs.mkdirSync(root)
      Fs.mkdirSync(outside)
      Fs.symlinkSync(outside, Path.join(root, "telegram:1"))
      const store = yield* CheckpointStore.makeFileSystem(root)
      const result = yield* Effect.either(store.save("telegram:1", "flow", "c", bytes(1)))
      assert.isTrue(Either.isLeft(result))
      assert.deepStrictEqual(Fs.readdirSync(outside), [])
    }))
})
