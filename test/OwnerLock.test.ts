/**
 * The single-owner lock, in process: a second owner fails at once with a message naming the directory and the
 * owner's pid; closing the first releases it. (Across processes and after kill -9: Persistence.process.test.ts.)
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Either, Exit, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as OwnerLock from "../src/state/sqlite/OwnerLock.js"
import * as TempDir from "./utils/TempDir.js"

describe("OwnerLock", () => {
  it.scopedLive("one owner at a time; released when the scope closes", () =>
    Effect.gen(function*() {
      const directory = Path.join(yield* TempDir.make(), "state")
      const first = yield* Scope.make()
      yield* Scope.extend(OwnerLock.acquire(directory), first)
      assert.strictEqual(Fs.readFileSync(Path.join(directory, OwnerLock.pidFile), "utf8").trim(), String(process.pid))

      const start = yield* Clock.currentTimeMillis
      const second = yield* Effect.scoped(Effect.either(OwnerLock.acquire(directory)))
      assert.isBelow((yield* Clock.currentTimeMillis) - start, 2000, "fails fast, no busy wait")
      assert.isTrue(Either.isLeft(second))
      const error = (second as Either.Left<OwnerLock.StateDirLocked | OwnerLock.StateDirUnavailable, void>).left
      assert.strictEqual(error._tag, "StateDirLocked")
      assert.include(error.message, directory)
      assert.include(error.message, `pid ${process.pid}`)

      yield* Scope.close(first, Exit.void)
      assert.isFalse(Fs.existsSync(Path.join(directory, OwnerLock.pidFile)))
      yield* Effect.scoped(OwnerLock.acquire(directory))
    }))

  it.scoped("a directory that cannot be created is a clear error", () =>
    Effect.gen(function*() {
      const dir = yield* TempDir.make()
      const file = Path.join(dir, "file")
      Fs.writeFileSync(file, "")
      const result = yield* Effect.scoped(Effect.either(OwnerLock.acquire(Path.join(file, "state"))))
      assert.isTrue(Either.isLeft(result) && result.left._tag === "StateDirUnavailable")
    }))
})
