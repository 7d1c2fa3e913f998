/**
 * The host's Postgres database (`AGENT_HOST_STATE=postgres`, `DATABASE_URL`): a connection pool, the host's
 * migrations applied before anything uses it, `SqlClient`/`PgClient` for the stores on it (state, checkpoints,
 * tasks), and `StateHealth` for readiness. Unlike the SQLite state dir there is no owner lock: several hosts may share the database
 * (what each store does about that is documented on it, and in docs/SCALING.md).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import * as PgClient from "@effect/sql-pg/PgClient"
import type { Scope } from "effect"
import { Context, Duration, Effect, Layer, Redacted, Schema } from "effect"
import * as StateHealth from "../StateHealth.js"
import * as Migrations from "./migrations/index.js"

export class StateDatabaseUnavailable extends Schema.TaggedError<StateDatabaseUnavailable>()(
  "StateDatabaseUnavailable",
  {
    /** The URL without its password. */
    database: Schema.String,
    reason: Schema.String
  }
) {
  override get message(): string {
    return `Cannot use the Postgres state database ${this.database}: ${this.reason}. Check DATABASE_URL (and that ` +
      `the server is up and the role may create tables), or unset AGENT_HOST_STATE to keep state in SQLite.`
  }
}

export interface Options {
  /** `postgres://user:password@host:port/database` */
  readonly url: Redacted.Redacted<string>
  /** Pool size (default 10). */
  readonly maxConnections?: number
  /** How long connecting may take (default 10 s). */
  readonly connectTimeout?: Duration.DurationInput
}

/** The URL with its password masked, for messages and logs. */
export const describeUrl = (url: Redacted.Redacted<string>): string => {
  const raw = Redacted.value(url)
  try {
    const parsed = new URL(raw)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(an unparseable URL)"
  }
}

const reasonOf = (cause: unknown): string => {
  const inner = typeof cause === "object" && cause !== null && "cause" in cause ? cause.cause : undefined
  const text = (e: unknown) => e instanceof Error ? e.message : String(e)
  return inner === undefined ? text(cause) : `${text(cause)} (${text(inner)})`
}

/** Connects and migrates; the pool closes with the scope. */
export const make = (
  options: Options
): Effect.Effect<
  Context.Context<SqlClient.SqlClient | PgClient.PgClient | StateHealth.StateHealth>,
  StateDatabaseUnavailable,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const database = describeUrl(options.url)
    const unavailable = (what: string) => (cause: unknown) =>
      new StateDatabaseUnavailable({ database, reason: `${what}: ${reasonOf(cause)}` })
    const client = yield* PgClient.make({
      url: options.url,
      maxConnections: options.maxConnections ?? 10,
      connectTimeout: options.connectTimeout ?? Duration.seconds(10),
      applicationName: "effect-agent-host"
    }).pipe(Effect.provide(Reactivity.layer), Effect.mapError(unavailable("cannot connect")))
    yield* Migrations.run.pipe(
      Effect.provideService(SqlClient.SqlClient, client),
      Effect.mapError(unavailable("cannot migrate the database"))
    )
    yield* Effect.logInfo("state database open").pipe(Effect.annotateLogs({ database }))
    // Readiness asks the pool for a connection and a round trip.
    const health = StateHealth.make(client`SELECT 1`, (e) => `${database}: ${reasonOf(e)}`)
    return Context.make(SqlClient.SqlClient, client).pipe(
      Context.add(PgClient.PgClient, client),
      Context.add(StateHealth.StateHealth, health)
    )
  }).pipe(Effect.withSpan("PgDb.make"))

export const layer = (
  options: Options
): Layer.Layer<SqlClient.SqlClient | PgClient.PgClient | StateHealth.StateHealth, StateDatabaseUnavailable> =>
  Layer.scopedContext(make(options))
