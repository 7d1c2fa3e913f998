/**
 * A private PostgreSQL for the tests: one server for the whole run, started by the first test file that asks for
 * a database (test files run in separate processes: the first takes a lock directory and starts the server, the
 * others wait for its URL file), a fresh database per `database`, the server stopped by the global teardown
 * (test/globalSetup.ts). Runs that need no database never start it.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import { inject } from "vitest"
import { paths, start, startTimeoutMs } from "./PostgresServer.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The directory the run's Postgres lives in (set by test/globalSetup.ts). */
    readonly postgresDir: string
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The server's base URL (`postgres://postgres@127.0.0.1:<port>`), starting it if no file has yet. */
export const serverUrl = async (): Promise<string> => {
  const dir = inject("postgresDir")
  const p = paths(dir)
  let owner = false
  try {
    Fs.mkdirSync(p.lock)
    owner = true
  } catch {
    // another file is starting it
  }
  if (owner) {
    try {
      const url = await start(dir)
      Fs.writeFileSync(p.url, url)
      return url
    } catch (cause) {
      const message = cause instanceof Error
        ? `${cause.message}\n${(cause as { stderr?: string }).stderr ?? ""}`
        : String(cause)
      Fs.writeFileSync(p.failed, message)
      throw new Error(`could not start the test Postgres: ${message}`)
    }
  }
  const deadline = Date.now() + startTimeoutMs
  while (Date.now() < deadline) {
    if (Fs.existsSync(p.url)) return Fs.readFileSync(p.url, "utf8")
    if (Fs.existsSync(p.failed)) {
      throw new Error(`the test Postgres did not start: ${Fs.readFileSync(p.failed, "utf8")}`)
    }
    await sleep(100)
  }
  throw new Error(`the test Postgres did not start within ${startTimeoutMs} ms`)
}

/** Runs `statement` on the server's `postgres` database (CREATE/DROP DATABASE cannot run in a transaction). */
export const admin = (base: string, statement: string) =>
  Effect.scoped(
    Effect.flatMap(
      PgClient.make({ url: Redacted.make(`${base}/postgres`), connectTimeout: "10 seconds", maxConnections: 1 }),
      (sql) => sql.unsafe(statement)
    )
  ).pipe(Effect.provide(Reactivity.layer))

/** A fresh, empty database on the run's server: its URL. Dropped (connections forced off) when the scope closes. */
export const database = Effect.acquireRelease(
  Effect.gen(function*() {
    const base = yield* Effect.promise(serverUrl)
    const name = `t_${randomBytes(6).toString("hex")}`
    yield* Effect.orDie(admin(base, `CREATE DATABASE ${name} STRATEGY FILE_COPY`))
    return { name, base, url: `${base}/${name}` }
  }),
  ({ base, name }) => Effect.ignore(admin(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
).pipe(Effect.map(({ url }) => url))
