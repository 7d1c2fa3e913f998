/**
 * The run's shared resources. Postgres (test/utils/Postgres.ts, PostgresServer.ts): a directory for it is made here, the server is
 * started by the first test file that asks for a database (runs that need none never start it), and stopped here.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import * as PostgresServer from "./utils/PostgresServer.js"

export default function setup(project: TestProject) {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "agent-host-pg-"))
  // The server runs as `postgres` (when we are root) and must be able to reach its directory.
  Fs.chmodSync(dir, 0o755)
  project.provide("postgresDir", dir)
  return () => PostgresServer.stop(dir)
}
