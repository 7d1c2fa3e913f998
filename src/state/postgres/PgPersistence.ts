/**
 * The Postgres stores in one module, for `Persistence` to import dynamically in postgres mode only (they pull in
 * @effect/sql-pg and pg, which SQLite and memory hosts never load).
 */
export * as PgCheckpointStore from "./PgCheckpointStore.js"
export * as PgConversationStore from "./PgConversationStore.js"
export * as PgDb from "./PgDb.js"
export * as PgStateStore from "./PgStateStore.js"
