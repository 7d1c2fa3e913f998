/**
 * The admin commands' work, on a state dir (see `StateAccess` for how each one opens it). Reads go straight to the
 * tables, read-only; writes go through the host's own stores (`TaskRunner.replay`, `TaskStore`, `StateStore`),
 * so they change rows exactly as the host would.
 */
import { SqlClient } from "@effect/sql"
import { Config, Duration, Effect, Layer, Option } from "effect"
import * as Fs from "node:fs"
import * as AdminRoutes from "../delivery/AdminRoutes.js"
import * as TaskRunner from "../delivery/TaskRunner.js"
import * as TaskStore from "../delivery/TaskStore.js"
import * as Time from "../domain/Time.js"
import * as Persistence from "../state/Persistence.js"
import * as SqliteStateStore from "../state/sqlite/SqliteStateStore.js"
import { StateStore } from "../state/StateStore.js"
import { CliFailure } from "./CliErrors.js"
import type { IdentityRef } from "./Format.js"
import { formatIdentity, isoTime, table } from "./Format.js"
import * as Output from "./Output.js"
import * as StateAccess from "./StateAccess.js"

const failWith = (message: string) => (cause: unknown) =>
  new CliFailure({
    message: `${message}: ${
      typeof cause === "object" && cause !== null && "message" in cause ? String(cause.message) : String(cause)
    }`
  })

/** Runs `use` on the read-only database. */
const reading = <A, E>(
  dir: string,
  use: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>
): Effect.Effect<A, E | CliFailure> => Effect.scoped(Effect.flatMap(StateAccess.readOnly(dir), use))

/** Runs `use` with the database opened as the host opens it (the owner lock held throughout). */
const writing = <A, E, R>(
  dir: string,
  layer: Layer.Layer<R, CliFailure, StateAccess.Writable>,
  use: Effect.Effect<A, E, R | StateAccess.Writable>,
  options: { readonly create?: boolean } = {}
): Effect.Effect<A, E | CliFailure> =>
  Effect.provide(use, Layer.provideMerge(layer, StateAccess.writable(dir, options)))

// ---------------------------------------------------------------------------------------------------------------
// tasks

export const tasksList = (options: {
  readonly dir: string
  readonly status: Option.Option<TaskStore.TaskStatus>
  readonly limit: number
  readonly json: boolean
}) =>
  reading(options.dir, (sql) =>
    Effect.gen(function*() {
      const rows = yield* (Option.isSome(options.status) ?
        sql<TaskStore.SqlRow>`SELECT * FROM ${sql(TaskStore.TABLE)} WHERE status = ${options.status.value}
          ORDER BY updated_at DESC LIMIT ${options.limit}` :
        sql<TaskStore.SqlRow>`SELECT * FROM ${sql(TaskStore.TABLE)} ORDER BY updated_at DESC LIMIT ${options.limit}`)
        .pipe(
          Effect.mapError(failWith("cannot list tasks"))
        )
      const tasks = rows.map((row) => AdminRoutes.view(TaskStore.fromSql(row)))
      if (options.json) return yield* Output.line(JSON.stringify({ tasks }))
      if (tasks.length === 0) return yield* Output.line("no tasks")
      yield* Output.line(table(
        ["ID", "NAME", "STATUS", "ATTEMPTS", "UPDATED", "LAST ERROR"],
        tasks.map((t) => [t.id, t.name, t.status, String(t.attempts), isoTime(t.updated_at), t.last_error ?? ""])
      ))
    }))

/** A failed (dead-letter) or cancelled task back to pending, with a fresh retry budget: the host runs it next start. */
export const tasksReplay = (options: { readonly dir: string; readonly id: string }) =>
  writing(
    options.dir,
    TaskRunner.layerSqlite().pipe(Layer.mapError(failWith("cannot open the task store"))),
    Effect.gen(function*() {
      const runner = yield* TaskRunner.TaskRunner
      const before = yield* runner.get(options.id)
      yield* runner.replay(options.id).pipe(Effect.mapError((e) => new CliFailure({ message: e.message })))
      const was = Option.match(before, { onNone: () => "", onSome: (row) => ` (was ${row.status})` })
      yield* Output.line(`task ${options.id} is pending again${was}; the host runs it when it starts`)
    })
  )

/** A pending or running task cancelled, as the runner records a cancellation. */
export const tasksCancel = (options: { readonly dir: string; readonly id: string }) =>
  writing(
    options.dir,
    TaskStore.layerSqlite().pipe(Layer.mapError(failWith("cannot open the task store"))),
    Effect.gen(function*() {
      const store = yield* TaskStore.TaskStore
      const found = yield* store.get(options.id).pipe(Effect.mapError(failWith("cannot read the task")))
      if (Option.isNone(found)) return yield* new CliFailure({ message: `no task with id ${options.id}` })
      const row = found.value
      if (TaskStore.isTerminal(row.status)) {
        return yield* new CliFailure({ message: `task ${options.id} is ${row.status}; it cannot be cancelled` })
      }
      const now = yield* Time.now
      yield* store.update({ ...row, status: "cancelled", lastError: "cancelled", updatedAt: now }).pipe(
        Effect.mapError(failWith("cannot cancel the task"))
      )
      yield* Output.line(`task ${options.id} cancelled (was ${row.status})`)
    })
  )

// ---------------------------------------------------------------------------------------------------------------
// state

/** Applies the migrations this version has and the database lacks (none the second time); creates it if missing. */
export const stateMigrate = (options: { readonly dir: string }) =>
  Effect.gen(function*() {
    const before = Fs.existsSync(StateAccess.databasePath(options.dir)) ?
      yield* reading(
        options.dir,
        (sql) => Effect.provideService(StateAccess.appliedMigration, SqlClient.SqlClient, sql)
      )
        .pipe(Effect.catchTag("CliFailure", (e) =>
          // Older than this version reads is exactly what migrate is for.
          e.message.includes("schema version") ? Effect.succeed(-1) : Effect.fail(e))) :
      0
    const after = yield* writing(options.dir, Layer.empty, StateAccess.appliedMigration, { create: true })
    const applied = before < 0 ? "the missing migrations" : `${after - before} migration(s)`
    yield* Output.line(
      `${StateAccess.databasePath(options.dir)}: schema version ${after} (applied ${applied})`
    )
  })

const fileSize = (path: string) => {
  try {
    return Fs.statSync(path).size
  } catch {
    return 0
  }
}

/** Rebuilds the database file without its free pages (and folds the WAL in). */
export const stateVacuum = (options: { readonly dir: string }) =>
  writing(
    options.dir,
    Layer.empty,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const file = StateAccess.databasePath(options.dir)
      const before = fileSize(file) + fileSize(`${file}-wal`)
      yield* sql`VACUUM`.pipe(Effect.mapError(failWith("vacuum failed")))
      yield* sql`PRAGMA wal_checkpoint(TRUNCATE)`.pipe(Effect.mapError(failWith("checkpoint failed")))
      const after = fileSize(file) + fileSize(`${file}-wal`)
      yield* Output.line(`vacuumed ${file}: ${before} -> ${after} bytes`)
    })
  )

/**
 * Cursors whose value is a key the host generated and keeps (the link-state signing key `auth:link-state-key`,
 * the Responses compaction key `<channel>.compaction_key`): never exported.
 */
export const isSecretCursor = (name: string) => /(^|[^a-z0-9])(key|secret|token|password)$/i.test(name)

/**
 * Rows a table must not export: `cursors` holding keys. Every other table is exported whole (the test lists them,
 * so a new table is reviewed before it ships).
 */
const exported = (tableName: string, row: Record<string, unknown>) =>
  tableName !== "cursors" || !isSecretCursor(String(row["name"]))

const jsonValue = (value: unknown): unknown => {
  if (value instanceof Uint8Array) return { base64: Buffer.from(value).toString("base64") }
  if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString()
  return value
}

const pageSize = 500

/**
 * Every table of the database as JSON lines, `{"table": …, "row": {…}}`, in one read transaction (a consistent
 * snapshot even beside a running host), to stdout or `out` (created with mode 0600: it holds users' data).
 * Blobs are `{"base64": …}`. Secrets are left out (see `isSecretCursor`); a summary goes to stderr.
 */
export const stateExport = (options: { readonly dir: string; readonly out: Option.Option<string> }) =>
  reading(options.dir, (sql) =>
    Effect.gen(function*() {
      const sink = yield* Option.match(options.out, {
        onNone: () => Effect.succeed(Output.stdout),
        onSome: (file) => Output.file(file)
      })
      const tables = yield* sql<{ readonly name: string; readonly sql: string | null }>`SELECT name, sql
        FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
      let rows = 0
      let skipped = 0
      for (const { name, sql: ddl } of tables) {
        const withRowid = !/WITHOUT\s+ROWID\s*$/i.test(ddl ?? "")
        let last = Number.MIN_SAFE_INTEGER
        for (let offset = 0;; offset += pageSize) {
          // Keyset pages by rowid; a WITHOUT ROWID table (seen ids: small rows) pages by offset.
          const page = withRowid ?
            yield* sql<Record<string, unknown>>`SELECT rowid AS "rowid", * FROM ${sql(name)}
              WHERE rowid > ${last} ORDER BY rowid LIMIT ${pageSize}` :
            yield* sql<Record<string, unknown>>`SELECT * FROM ${sql(name)} LIMIT ${pageSize} OFFSET ${offset}`
          for (const raw of page) {
            if (withRowid) last = Number(raw["rowid"])
            const row: Record<string, unknown> = {}
            for (const [column, value] of Object.entries(raw)) {
              if (withRowid && column === "rowid") continue
              row[column] = jsonValue(value)
            }
            if (!exported(name, row)) {
              skipped++
              continue
            }
            yield* sink.write(`${JSON.stringify({ table: name, row })}\n`)
            rows++
          }
          if (page.length < pageSize) break
        }
      }
      yield* sink.close
      yield* Output.errorLine(
        `exported ${rows} rows from ${tables.length} tables` +
          (skipped > 0 ? ` (left out ${skipped} secret key(s) from cursors)` : "")
      )
    }).pipe(sql.withTransaction, Effect.mapError((e) => e._tag === "CliFailure" ? e : failWith("export failed")(e))))

// ---------------------------------------------------------------------------------------------------------------
// links

interface LinkRow {
  readonly channel: string
  readonly native_id: string
  readonly isolation_key: string
  readonly subject: string
  readonly claims: string
  readonly linked_at: number
}

const parseClaims = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** Identity links, oldest first; with `identity`, the links of the person that identity is linked to. */
export const linksList = (options: {
  readonly dir: string
  readonly identity: Option.Option<IdentityRef>
  readonly json: boolean
}) =>
  reading(options.dir, (sql) =>
    Effect.gen(function*() {
      const rows = yield* (Option.isSome(options.identity) ?
        sql<LinkRow>`SELECT * FROM links WHERE isolation_key IN (SELECT isolation_key FROM links
          WHERE channel = ${options.identity.value.channel} AND native_id = ${options.identity.value.nativeId})
          ORDER BY linked_at` :
        sql<LinkRow>`SELECT * FROM links ORDER BY linked_at`).pipe(Effect.mapError(failWith("cannot list links")))
      const links = rows.map((row) => ({
        identity: formatIdentity({ channel: row.channel, nativeId: row.native_id }),
        channel: row.channel,
        native_id: row.native_id,
        isolation_key: row.isolation_key,
        subject: row.subject,
        claims: parseClaims(row.claims),
        linked_at: Number(row.linked_at)
      }))
      if (options.json) return yield* Output.line(JSON.stringify({ links }))
      if (links.length === 0) return yield* Output.line("no links")
      yield* Output.line(table(
        ["IDENTITY", "SUBJECT", "ISOLATION KEY", "LINKED"],
        links.map((l) => [l.identity, l.subject, l.isolation_key, isoTime(l.linked_at)])
      ))
    }))

const stateStore = SqliteStateStore.layerWithoutDb

/** Unlinks an identity: its channel goes back to its own isolation key (its next turn asks to link again). */
export const linksRemove = (options: { readonly dir: string; readonly identity: IdentityRef }) =>
  writing(
    options.dir,
    stateStore,
    Effect.gen(function*() {
      const store = yield* StateStore
      const { channel, nativeId } = options.identity
      const link = yield* store.getLink(channel, nativeId)
      if (Option.isNone(link)) {
        return yield* new CliFailure({ message: `no link for ${formatIdentity(options.identity)}` })
      }
      yield* store.deleteLink(channel, nativeId)
      yield* Output.line(`removed the link of ${formatIdentity(options.identity)} (subject ${link.value.subject})`)
    })
  )

// ---------------------------------------------------------------------------------------------------------------
// responses

/** The host's own retention for stored responses (`AGENT_HOST_RESPONSE_RETENTION`, default 30 days). */
export const defaultResponseAge: Effect.Effect<Duration.Duration, CliFailure> = Config.duration(
  "AGENT_HOST_RESPONSE_RETENTION"
).pipe(
  Config.withDefault(Persistence.defaults.responseRetention),
  Effect.mapError(failWith("configuration error: AGENT_HOST_RESPONSE_RETENTION"))
)

/** Deletes stored responses (with their events) created more than `olderThan` ago. */
export const responsesPrune = (options: { readonly dir: string; readonly olderThan: Duration.Duration }) =>
  writing(
    options.dir,
    stateStore,
    Effect.gen(function*() {
      const store = yield* StateStore
      const cutoff = Time.minus(yield* Time.now, options.olderThan)
      const removed = yield* store.pruneResponses(cutoff)
      yield* Output.line(
        `pruned ${removed} stored response(s) created before ${isoTime(cutoff)} (older than ${
          Duration.format(options.olderThan)
        })`
      )
    })
  )
