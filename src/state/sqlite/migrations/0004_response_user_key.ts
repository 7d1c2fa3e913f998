/**
 * Migration 4: stored responses remember the user isolation key that created them, so lookups can be scoped to
 * the caller's user (issue 13). Rows stored before it have none. Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE responses ADD COLUMN user_key TEXT`
})
