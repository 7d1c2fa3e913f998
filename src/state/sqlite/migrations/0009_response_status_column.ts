/**
 * Migration 9: stored responses keep their wire status in a column written with the row (as on Postgres), indexed
 * with `created_at`, instead of an index on `json_extract` of the response JSON, which parsed the whole response
 * twice on every write (`json_valid`, then `json_extract`). Rows already stored get the status their JSON holds
 * ('' when it is not valid JSON or has no string status, as `statusOf` gives). Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE responses ADD COLUMN status TEXT NOT NULL DEFAULT ''`
  yield* sql`UPDATE responses SET status = CASE
    WHEN json_valid(response) AND json_type(response, '$.status') = 'text' THEN json_extract(response, '$.status')
    ELSE '' END`
  yield* sql`DROP INDEX IF EXISTS responses_by_status`
  yield* sql`CREATE INDEX responses_by_status ON responses (status, created_at)`
})
