/**
 * A state dir as a host leaves it, for the CLI's tests: filled through the host's own stores (tasks, identity
 * links, stored responses, cursors with a generated key), and read back with a read-only connection.
 */
import { Effect, Layer } from "effect"
import * as Path from "node:path"
import * as TaskStore from "../../src/delivery/TaskStore.js"
import * as Time from "../../src/domain/Time.js"
import * as NativeSqlite from "../../src/state/sqlite/NativeSqlite.js"
import * as SqliteStateStore from "../../src/state/sqlite/SqliteStateStore.js"
import * as StateDb from "../../src/state/sqlite/StateDb.js"
import { StateStore } from "../../src/state/StateStore.js"

/** The link-state signing key stored in the cursors: the export must leave it out. */
export const secretKey = "c2VjcmV0LWxpbmstc3RhdGUta2V5LW5ldmVyLWV4cG9ydGVk"

const task = (id: string, status: TaskStore.TaskStatus, now: Time.EpochMillis): TaskStore.TaskRecord => ({
  id,
  name: "push.telegram",
  idempotencyKey: id,
  status,
  attempts: status === "failed" ? 5 : 0,
  phase: 0,
  nextAttemptAt: now,
  lastError: status === "failed" ? "destination said 500" : null,
  payload: "{}",
  retry: null,
  shared: null,
  createdAt: now,
  updatedAt: now
})

/**
 * The state a host would leave: tasks, two linked identities of one person, an old and a new response, cursors. */
export const populate = (dir: string) =>
  Effect.gen(function*() {
    const store = yield* StateStore
    const tasks = yield* TaskStore.TaskStore
    const now = yield* Time.now
    for (const [id, status] of [["task_failed", "failed"], ["task_pending", "pending"], ["task_done", "succeeded"]]) {
      yield* tasks.insert(task(id!, status as TaskStore.TaskStatus, now), { dedupe: false })
    }
    for (const [channel, nativeId] of [["telegram", "42"], ["activity", "29:abc"]]) {
      yield* store.putLink({
        channel: channel!,
        nativeId: nativeId!,
        isolationKey: "person-1",
        subject: "sub-1",
        claims: { email: "a@example.com" },
        linkedAt: now
      })
    }
    yield* store.putLink({
      channel: "discord",
      nativeId: "7",
      isolationKey: "person-2",
      subject: "sub-2",
      claims: {},
      linkedAt: now
    })
    for (const [id, createdAt] of [["resp_old", Time.minus(now, "10 days")], ["resp_new", now]] as const) {
      yield* store.putResponse({
        id,
        sessionKey: undefined,
        response: { id, status: "completed" },
        inputItems: [],
        createdAt
      })
    }
    yield* store.setCursor("auth:link-state-key", secretKey)
    yield* store.setCursor("telegram:offset", "1234")
  }).pipe(
    Effect.provide(
      Layer.mergeAll(SqliteStateStore.layerWithoutDb, TaskStore.layerSqlite()).pipe(
        Layer.provideMerge(StateDb.layer({ directory: dir }))
      )
    ),
    Effect.orDie
  )

export const query = <A>(dir: string, sql: string, ...params: ReadonlyArray<unknown>): ReadonlyArray<A> => {
  const db = NativeSqlite.open(Path.join(dir, "state.db"), { readonly: true })
  try {
    return db.prepare(sql).all(...params) as ReadonlyArray<A>
  } finally {
    db.close()
  }
}
