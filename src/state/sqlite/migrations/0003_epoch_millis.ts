/**
 * Migration 3: stored Responses' `created_at` in milliseconds, like every other stored time. Versions before this
 * stored it in seconds while retention compared it with a cutoff in milliseconds, so every response looked
 * decades old and was pruned; rows still in seconds (below 1e11, i.e. before 1973 if read as milliseconds) are
 * converted so responses kept by an upgraded host stay retrievable. Also indexes the wire status, so startup finds
 * responses a dead process left `in_progress` without a table scan. Released migrations are never edited.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE responses SET created_at = created_at * 1000 WHERE created_at < 100000000000`
  // Guarded by json_valid: an index on a bare json_extract would make every write or delete of a corrupt row fail,
  // so such a row could not even be quarantined.
  yield* sql`CREATE INDEX responses_by_status
    ON responses (CASE WHEN json_valid(response) THEN json_extract(response, '$.status') END)`
})
