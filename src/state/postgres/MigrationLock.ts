/**
 * One host at a time creating or migrating tables in a shared Postgres database. Schema set-up that checks and then
 * creates (the SQL migrator's migrations table, `@effect/cluster`'s runner and message tables) races when several
 * hosts start at once on a new database: one of them fails with "already exists" (a duplicate `pg_type` row). The
 * set-up runs holding a session advisory lock on a connection of its own (not a transaction: the migrator's table
 * check fails by design, which would abort one); a host that dies holding it releases it with its session.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Scope } from "effect"

// The two-key form: its key space does not overlap the single-key locks `@effect/cluster` takes for shards.
const lock = "1634166888, 1"

/** Holds the lock on a reserved connection until the scope closes (unlocked, then the connection released). */
const held = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const holder = yield* sql.reserve
    yield* Effect.addFinalizer(() => Effect.ignore(holder.executeRaw(`SELECT pg_advisory_unlock(${lock})`, [])))
    yield* holder.executeRaw(`SELECT pg_advisory_lock(${lock})`, [])
  })

/**
 * Runs `setup` holding the database's set-up lock (waiting for another host's set-up to finish first). The lock has
 * a scope of its own: `setup` may build resources in the caller's scope (a layer) that outlive the lock.
 */
export const around = <A, E, R>(
  setup: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.acquireUseRelease(
      Scope.make(),
      (scope) => Effect.zipRight(Scope.extend(held(sql), scope), setup),
      (scope, exit) => Scope.close(scope, exit)
    ))
