/**
 * The single-owner lock on a state directory: one host process at a time may use it.
 *
 * The lock is an OS file lock held by a dedicated SQLite database (`owner.lock`) opened with
 * `locking_mode=EXCLUSIVE`: SQLite takes a POSIX/Windows byte-range lock on first write and keeps it until the
 * connection closes. The OS drops it when the process dies, `kill -9` included, so a stale lock never blocks a
 * restart. The owner's pid is written beside it (`owner.pid`) only to name the owner in the error message.
 */
import { Effect, Option, Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NativeSqlite from "./NativeSqlite.js"

export class StateDirLocked extends Schema.TaggedError<StateDirLocked>()("StateDirLocked", {
  directory: Schema.String,
  pid: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    const owner = this.pid === undefined ? "another process" : `another process (pid ${this.pid})`
    return `State directory ${this.directory} is already in use by ${owner}. ` +
      `Only one agent host may own a state directory: stop the other process, or set AGENT_HOST_STATE_DIR to ` +
      `another directory (or AGENT_HOST_STATE=memory to run without persistence).`
  }
}

export class StateDirUnavailable extends Schema.TaggedError<StateDirUnavailable>()("StateDirUnavailable", {
  directory: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Cannot use state directory ${this.directory}: ${this.reason}. ` +
      `Check that it is a writable directory, or set AGENT_HOST_STATE_DIR to another one.`
  }
}

export const lockFile = "owner.lock"
export const pidFile = "owner.pid"

const readPid = (directory: string): number | undefined => {
  try {
    const pid = Number.parseInt(Fs.readFileSync(Path.join(directory, pidFile), "utf8").trim(), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

const isBusy = (cause: unknown) =>
  typeof cause === "object" && cause !== null && "code" in cause &&
  (cause.code === "SQLITE_BUSY" || cause.code === "SQLITE_LOCKED")

const errorText = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

/**
 * Takes the lock on `directory` (created if missing) for the lifetime of the scope; fails with `StateDirLocked`
 * at once (no waiting) when another live process holds it.
 */
export const acquire = (directory: string) =>
  Effect.acquireRelease(
    Effect.suspend((): Effect.Effect<
      { readonly directory: string; readonly db: NativeSqlite.Database },
      StateDirLocked | StateDirUnavailable
    > => {
      const resolved = Path.resolve(directory)
      try {
        Fs.mkdirSync(resolved, { recursive: true })
      } catch (cause) {
        return Effect.fail(new StateDirUnavailable({ directory: resolved, reason: errorText(cause) }))
      }
      let db: NativeSqlite.Database | undefined
      try {
        // timeout 0: a held lock is reported at once instead of after the default 5 s busy wait
        db = NativeSqlite.open(Path.join(resolved, lockFile), { timeout: 0 })
        db.pragma("locking_mode = EXCLUSIVE")
        db.pragma("journal_mode = MEMORY") // the lock file holds nothing worth a journal
        db.exec(
          "CREATE TABLE IF NOT EXISTS owner (pid INTEGER NOT NULL); DELETE FROM owner;"
        )
        db.prepare("INSERT INTO owner (pid) VALUES (?)").run(process.pid)
      } catch (cause) {
        db?.close()
        if (isBusy(cause)) {
          const pid = readPid(resolved)
          return Effect.fail(
            new StateDirLocked(pid === undefined ? { directory: resolved } : { directory: resolved, pid })
          )
        }
        return Effect.fail(new StateDirUnavailable({ directory: resolved, reason: errorText(cause) }))
      }
      try {
        Fs.writeFileSync(Path.join(resolved, pidFile), `${process.pid}\n`)
      } catch (cause) {
        db.close()
        return Effect.fail(new StateDirUnavailable({ directory: resolved, reason: errorText(cause) }))
      }
      return Effect.succeed({ directory: resolved, db })
    }),
    ({ db, directory }) =>
      Effect.sync(() => {
        if (readPid(directory) === process.pid) Fs.rmSync(Path.join(directory, pidFile), { force: true })
        db.close()
      })
  ).pipe(Effect.asVoid, Effect.withSpan("OwnerLock.acquire"))

/** The pid recorded by the current owner, if any (for diagnostics). */
export const ownerPid = (directory: string): Option.Option<number> => Option.fromNullable(readPid(directory))
