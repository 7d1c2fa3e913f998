/**
 * Direct access to better-sqlite3 (the driver under `@effect/sql-sqlite-node`), typed with the few members the
 * host uses: the package ships no type declarations and none are installed.
 */
import Sqlite from "better-sqlite3"

export interface Statement {
  readonly run: (...params: ReadonlyArray<unknown>) => { readonly changes: number }
  readonly get: (...params: ReadonlyArray<unknown>) => unknown
  readonly all: (...params: ReadonlyArray<unknown>) => Array<unknown>
}

export interface Database {
  readonly prepare: (sql: string) => Statement
  readonly exec: (sql: string) => void
  readonly pragma: (pragma: string) => unknown
  readonly close: () => void
  /** True while a transaction is open on this connection. */
  readonly inTransaction: boolean
}

/** What better-sqlite3 throws: `code` names SQLite's extended result code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_…`). */
export interface SqliteError extends Error {
  readonly code: string
}

export const isSqliteError = (error: unknown): error is SqliteError =>
  error instanceof Error && typeof (error as { readonly code?: unknown }).code === "string"

export interface Options {
  readonly readonly?: boolean
  /** Milliseconds to wait for a lock before failing with SQLITE_BUSY (default 5000). */
  readonly timeout?: number
}

type Constructor = new(filename: string, options?: Options) => Database

export const open = (filename: string, options?: Options): Database => new (Sqlite as Constructor)(filename, options)
