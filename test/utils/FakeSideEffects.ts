/**
 * A fake side-effect endpoint on 127.0.0.1 for workflow tests: counts every call per path and step, and can
 * hold a path's first call open (so a test can kill the host while that activity is in flight).
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"

export interface FakeSideEffects {
  readonly url: string
  /** Calls seen, keyed `"/record/1"`, `"/summarize"`. */
  readonly count: (key: string) => number
  readonly calls: () => ReadonlyArray<
    { readonly key: string; readonly body: unknown; readonly idempotencyKey: string | undefined }
  >
}

/** Starts the endpoint; `holdFirst` paths never answer their first call. Closed with the scope. */
export const make = (options: { readonly holdFirst?: ReadonlyArray<string> } = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly fake: FakeSideEffects; readonly server: Http.Server }>((resume) => {
      const counts = new Map<string, number>()
      const calls: Array<{ key: string; body: unknown; idempotencyKey: string | undefined }> = []
      const server = Http.createServer((req, res) => {
        let raw = ""
        req.on("data", (d: Buffer) => (raw += d.toString()))
        req.on("end", () => {
          const body = raw.length > 0 ? JSON.parse(raw) as Record<string, unknown> : {}
          const path = req.url ?? "/"
          const key = typeof body.step === "number" ? `${path}/${body.step}` : path
          const n = (counts.get(key) ?? 0) + 1
          counts.set(key, n)
          const idempotencyKey = req.headers["idempotency-key"]
          calls.push({ key, body, idempotencyKey: typeof idempotencyKey === "string" ? idempotencyKey : undefined })
          if (n === 1 && options.holdFirst?.includes(key)) return
          if (path === "/summarize") {
            const answers = Array.isArray(body.answers) ? body.answers : []
            res.end(`Remote summary of ${answers.length} answers: ${answers.join(", ")}`)
            return
          }
          res.end("ok")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as Net.AddressInfo).port
        resume(Effect.succeed({
          server,
          fake: { url: `http://127.0.0.1:${port}`, count: (key) => counts.get(key) ?? 0, calls: () => [...calls] }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ fake }) => fake))
