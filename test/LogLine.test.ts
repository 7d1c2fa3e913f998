import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import * as LogLine from "../src/internal/LogLine.js"
import * as ServerProcess from "./utils/ServerProcess.js"

const forged = "ok\ntimestamp=2026-01-01T00:00:00.000Z level=ERROR message=\"forged\"\r\u001b[31mred\u001b[0m \u202e"

describe("log lines", () => {
  it.effect("escape newlines, carriage returns, ANSI escapes and bidi overrides in messages and annotations", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => {
        lines.push(LogLine.format(options))
      })
      yield* Effect.logWarning(`target ${forged}`).pipe(
        Effect.annotateLogs({ target: forged, "bad\nkey": "v" }),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      assert.strictEqual(lines.length, 1)
      const line = lines[0]!
      assert.notMatch(line, /[\n\r\u001b\u202e]/)
      assert.include(
        line,
        "message=\"target ok\\ntimestamp=2026-01-01T00:00:00.000Z level=ERROR message=\\\"forged\\\""
      )
      assert.include(line, "\\r\\u001b[31mred\\u001b[0m \\u202e\"")
      assert.include(line, " target=\"ok\\ntimestamp=")
      assert.include(line, " bad_key=v")
      assert.strictEqual(LogLine.escapeValue("plain-value:1"), "plain-value:1")
      assert.strictEqual(LogLine.escapeValue(""), "\"\"")
    }))

  it.scopedLive("npm start: a target name with a newline and ANSI escapes stays on its own, escaped line", () =>
    Effect.gen(function*() {
      const server = yield* ServerProcess.start({
        OPENAI_API_KEY: "sk-test",
        OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
        OPENAI_MODEL: forged
      })
      const output = server.output()
      const banner = output.split("\n").filter((line) => line.includes("agent host ready"))
      assert.strictEqual(banner.length, 1, output)
      assert.include(banner[0]!, "openai:ok\\ntimestamp=2026-01-01T00:00:00.000Z level=ERROR")
      assert.notMatch(output, /^timestamp=2026-01-01/m)
      assert.notInclude(output, "\u001b")
      assert.notInclude(output, "\r")
    }))
})
