/**
 * Workflow checkpoints: opaque blobs saved per isolation key and workflow name, so a workflow target can resume
 * from its latest checkpoint. Implementations: `layerMemory` (here), `layerFileSystem` (here: one folder per
 * isolation key under a root), `SqliteCheckpointStore.layer` and `PgCheckpointStore.layer` (the state database).
 *
 * The file-system store uses the isolation key as a folder name, so it rejects keys that could escape its root
 * (see `keyProblem`). A rejected key is a `CheckpointKeyRejected` failure: callers skip checkpointing for that
 * request with a warning (`orSkip`) and still run it.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Time from "../domain/Time.js"

export interface Checkpoint {
  readonly id: string
  readonly isolationKey: string
  readonly workflowName: string
  readonly createdAt: Time.EpochMillis
  readonly data: Uint8Array
}

export interface CheckpointInfo {
  readonly id: string
  readonly createdAt: Time.EpochMillis
}

export class CheckpointKeyRejected extends Schema.TaggedError<CheckpointKeyRejected>()("CheckpointKeyRejected", {
  key: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Checkpointing is skipped for isolation key ${
      JSON.stringify(this.key.slice(0, 80))
    }: the key ${this.reason}.`
  }
}

export interface CheckpointStoreShape {
  /** Saves a checkpoint (stamped with the current time); saving an existing id replaces it and makes it latest. */
  readonly save: (
    isolationKey: string,
    workflowName: string,
    id: string,
    data: Uint8Array
  ) => Effect.Effect<Checkpoint, CheckpointKeyRejected>
  readonly load: (
    isolationKey: string,
    workflowName: string,
    id: string
  ) => Effect.Effect<Option.Option<Checkpoint>, CheckpointKeyRejected>
  /** The most recently saved checkpoint. */
  readonly latest: (
    isolationKey: string,
    workflowName: string
  ) => Effect.Effect<Option.Option<Checkpoint>, CheckpointKeyRejected>
  /** Saved checkpoints, newest first. */
  readonly list: (
    isolationKey: string,
    workflowName: string
  ) => Effect.Effect<ReadonlyArray<CheckpointInfo>, CheckpointKeyRejected>
}

export class CheckpointStore extends Context.Tag("effect-agent-host/CheckpointStore")<
  CheckpointStore,
  CheckpointStoreShape
>() {}

/**
 * Runs a checkpoint operation; when the key is rejected, logs a warning and yields `fallback` instead, so the
 * request goes on without checkpointing.
 */
export const orSkip = <A, B, E, R>(
  effect: Effect.Effect<A, E | CheckpointKeyRejected, R>,
  fallback: B
): Effect.Effect<A | B, Exclude<E, CheckpointKeyRejected>, R> =>
  Effect.catchIf(
    effect,
    (e): e is CheckpointKeyRejected => e instanceof CheckpointKeyRejected,
    (e) => Effect.as(Effect.logWarning(e.message), fallback)
  ) as Effect.Effect<A | B, Exclude<E, CheckpointKeyRejected>, R>

/** Longest key accepted as a folder name: file systems cap a name at 255 bytes. */
export const maxKeyBytes = 255

/**
 * Why `key` cannot name a checkpoint folder, or undefined when it can. Rejected: empty keys, `/`, `\`, NUL and
 * other control characters, keys made only of dots, absolute paths, keys over 255 bytes, and drive prefixes.
 *
 * Drive-prefix rule: a single ASCII letter then `:` at the start is a drive on Windows (`C:foo` is relative to
 * drive C's current directory), so on Windows any such key is rejected. Elsewhere it is no drive, but an upper-case
 * letter (`C:foo`) is still rejected so a state dir stays safe to open on Windows, while lower-case namespaced keys
 * (`a:1`; channel names are lower case) are accepted.
 */
export const keyProblem = (key: string, options?: { readonly windows?: boolean }): string | undefined => {
  const windows = options?.windows ?? process.platform === "win32"
  if (key.length === 0) return "is empty"
  if (key.includes("/") || key.includes("\\")) return "contains a path separator"
  if (/[\u0000-\u001f\u007f]/.test(key)) return "contains NUL or a control character"
  if (/^\.+$/.test(key)) return "is only dots"
  if (Path.posix.isAbsolute(key) || Path.win32.isAbsolute(key)) return "is an absolute path"
  if (windows ? /^[A-Za-z]:/.test(key) : /^[A-Z]:/.test(key)) return "starts with a drive prefix"
  if (Buffer.byteLength(key) > maxKeyBytes) return `is longer than ${maxKeyBytes} bytes`
  return undefined
}

/** `root/key`, or why not: the key rules above, then the resolved folder must lie strictly inside the root. */
export const folderFor = (root: string, key: string): Effect.Effect<string, CheckpointKeyRejected> => {
  const problem = keyProblem(key)
  if (problem !== undefined) return Effect.fail(new CheckpointKeyRejected({ key, reason: problem }))
  const resolvedRoot = Path.resolve(root)
  const target = Path.resolve(resolvedRoot, key)
  const relative = Path.relative(resolvedRoot, target)
  if (relative.length === 0 || leavesBase(relative) || relative !== key) {
    return Effect.fail(new CheckpointKeyRejected({ key, reason: "resolves outside the checkpoint root" }))
  }
  return Effect.succeed(target)
}

/** Whether `relative` (from `Path.relative`) points outside its base. */
const leavesBase = (relative: string) =>
  relative === ".." || relative.startsWith(`..${Path.sep}`) || Path.isAbsolute(relative)

const entryKey = (isolationKey: string, workflowName: string) => `${isolationKey}\u0000${workflowName}`

/** In process: for tests and hosts without persistence. Accepts every key. */
export const makeMemory: Effect.Effect<CheckpointStoreShape> = Effect.sync(() => {
  // newest last
  const entries = new Map<string, Array<Checkpoint>>()
  const all = (isolationKey: string, workflowName: string) => entries.get(entryKey(isolationKey, workflowName)) ?? []
  return CheckpointStore.of({
    save: (isolationKey, workflowName, id, data) =>
      Effect.map(Time.now, (createdAt) => {
        const checkpoint: Checkpoint = { id, isolationKey, workflowName, createdAt, data: data.slice() }
        const list = all(isolationKey, workflowName).filter((c) => c.id !== id)
        list.push(checkpoint)
        entries.set(entryKey(isolationKey, workflowName), list)
        return checkpoint
      }),
    load: (isolationKey, workflowName, id) =>
      Effect.sync(() => Option.fromNullable(all(isolationKey, workflowName).find((c) => c.id === id))),
    latest: (isolationKey, workflowName) =>
      Effect.sync(() => Option.fromNullable(all(isolationKey, workflowName).at(-1))),
    list: (isolationKey, workflowName) =>
      Effect.sync(() => all(isolationKey, workflowName).map(({ createdAt, id }) => ({ id, createdAt })).reverse())
  })
})

export const layerMemory: Layer.Layer<CheckpointStore> = Layer.effect(CheckpointStore, makeMemory)

const hash = (s: string) => Crypto.createHash("sha256").update(s).digest("hex").slice(0, 32)

/** A folder name for a workflow name: readable when short, hashed when long; never `.`/`..`, never a separator. */
const workflowFolder = (workflowName: string) => {
  const encoded = Buffer.from(workflowName).toString("base64url")
  return encoded.length <= 120 ? `w_${encoded}` : `h_${hash(workflowName)}`
}

const FileContents = Schema.parseJson(Schema.Struct({
  id: Schema.String,
  isolationKey: Schema.String,
  workflowName: Schema.String,
  createdAt: Time.EpochMillis,
  data: Schema.Uint8ArrayFromBase64
}))
const decodeFile = Schema.decodeUnknownOption(FileContents)
const encodeFile = Schema.encodeSync(FileContents)

/**
 * One folder per isolation key under `root`, one per workflow inside it, one file per checkpoint named
 * `<createdAt>-<counter>-<hash of id>.json` so the names sort oldest to newest. Writes go to a temporary file
 * renamed into place, so a crash never leaves half a checkpoint.
 */
export const makeFileSystem = (root: string): Effect.Effect<CheckpointStoreShape> =>
  Effect.sync(() => {
    const resolvedRoot = Path.resolve(root)
    let counter = 0

    const folder = (isolationKey: string, workflowName: string) =>
      Effect.map(folderFor(resolvedRoot, isolationKey), (dir) => Path.join(dir, workflowFolder(workflowName)))

    const files = (dir: string) =>
      Effect.promise(() =>
        Fs.readdir(dir).then(
          (names) => names.filter((n) => n.endsWith(".json")).sort(),
          () => [] as Array<string>
        )
      )

    const read = (dir: string, name: string): Effect.Effect<Option.Option<Checkpoint>> =>
      Effect.promise(() => Fs.readFile(Path.join(dir, name), "utf8").catch(() => undefined)).pipe(
        Effect.flatMap((text) => {
          if (text === undefined) return Effect.succeed(Option.none())
          const decoded: Option.Option<Checkpoint> = decodeFile(text)
          return Option.isSome(decoded) ?
            Effect.succeed(decoded) :
            Effect.as(
              Effect.logWarning("skipped an unreadable checkpoint file").pipe(Effect.annotateLogs({ dir, name })),
              Option.none()
            )
        })
      )

    /** Newest first, unreadable files skipped. */
    const readAll = (dir: string) =>
      Effect.flatMap(files(dir), (names) =>
        Effect.map(
          Effect.forEach(names.reverse(), (name) => read(dir, name)),
          (all) => all.flatMap(Option.toArray)
        ))

    return CheckpointStore.of({
      save: Effect.fn("CheckpointStore.save")(function*(isolationKey, workflowName, id, data) {
        const dir = yield* folder(isolationKey, workflowName)
        const createdAt = yield* Time.now
        const suffix = `-${hash(id)}.json`
        const name = `${String(createdAt).padStart(15, "0")}-${String(counter++ % 1_000_000).padStart(6, "0")}${suffix}`
        const checkpoint: Checkpoint = { id, isolationKey, workflowName, createdAt, data }
        const escapes = yield* Effect.promise(async () => {
          const keyDir = Path.dirname(dir)
          await Fs.mkdir(keyDir, { recursive: true })
          // a symlink planted in the root must not carry writes outside it: check before creating anything inside
          const [realRoot, realKeyDir] = await Promise.all([Fs.realpath(resolvedRoot), Fs.realpath(keyDir)])
          const relative = Path.relative(realRoot, realKeyDir)
          if (relative.length === 0 || leavesBase(relative)) return true
          await Fs.mkdir(dir, { recursive: true })
          return false
        })
        if (escapes) {
          return yield* new CheckpointKeyRejected({ key: isolationKey, reason: "resolves outside the checkpoint root" })
        }
        yield* Effect.promise(async () => {
          const previous = (await Fs.readdir(dir)).filter((n) => n.endsWith(suffix))
          const temporary = Path.join(dir, `.${name}.${process.pid}.tmp`)
          await Fs.writeFile(temporary, encodeFile(checkpoint))
          await Fs.rename(temporary, Path.join(dir, name))
          await Promise.all(previous.map((n) => Fs.rm(Path.join(dir, n), { force: true })))
        })
        return checkpoint
      }),
      load: (isolationKey, workflowName, id) =>
        Effect.gen(function*() {
          const dir = yield* folder(isolationKey, workflowName)
          const suffix = `-${hash(id)}.json`
          const name = (yield* files(dir)).find((n) => n.endsWith(suffix))
          if (name === undefined) return Option.none()
          return Option.filter(yield* read(dir, name), (c) => c.id === id)
        }),
      latest: (isolationKey, workflowName) =>
        Effect.gen(function*() {
          const dir = yield* folder(isolationKey, workflowName)
          for (const name of (yield* files(dir)).reverse()) {
            const checkpoint = yield* read(dir, name)
            if (Option.isSome(checkpoint)) return checkpoint
          }
          return Option.none()
        }),
      list: (isolationKey, workflowName) =>
        Effect.flatMap(folder(isolationKey, workflowName), readAll).pipe(
          Effect.map((all) => all.map(({ createdAt, id }) => ({ id, createdAt })))
        )
    })
  })

/** Checkpoints as files under `root` (created on first save). */
export const layerFileSystem = (root: string): Layer.Layer<CheckpointStore> =>
  Layer.effect(CheckpointStore, makeFileSystem(root))
