import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Logger, Tracer } from "effect"
import { HostConfigurationError } from "../src/domain/Errors.js"
import * as LogLine from "../src/internal/LogLine.js"
import * as StartupError from "../src/internal/StartupError.js"

const configFailure = <A>(config: Config.Config<A>, env: Record<string, string>) =>
  Effect.flip(Effect.withConfigProvider(config, ConfigProvider.fromMap(new Map(Object.entries(env)))))

describe("startup errors", () => {
  it.effect("a configuration error is one line naming each setting", () =>
    Effect.gen(function*() {
      const missing = yield* configFailure(Config.string("TELEGRAM_BOT_TOKEN"), {})
      assert.strictEqual(
        StartupError.describe(missing),
        "configuration error: TELEGRAM_BOT_TOKEN is required but not set"
      )
      const both = yield* configFailure(Config.all([Config.port("PORT"), Config.integer("LIMIT")]), {
        PORT: "x",
        LIMIT: "y"
      })
      const line = StartupError.describe(both)
      assert.match(line, /^configuration error: PORT: .*"x"; LIMIT: .*"y"$/)
      assert.notInclude(line, "\n")
      assert.strictEqual(
        StartupError.describe(new HostConfigurationError({ message: "cannot listen on 127.0.0.1:80:\nEACCES" })),
        "configuration error: cannot listen on 127.0.0.1:80: EACCES"
      )
    }))
})

describe("LOG_FORMAT=json", () => {
  it.effect("one JSON object per line: level, message, annotations, trace and span ids, escaped", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => void lines.push(LogLine.formatJson(options)))
      yield* Effect.logWarning("hello\nforged \u202e").pipe(
        Effect.annotateLogs({ channel: "invocations", count: 3 }),
        Effect.withSpan("outer", { captureStackTrace: false }),
        Effect.withTracer(Tracer.make({
          span: (name, parent, context, links, startTime, kind) =>
            ({
              _tag: "Span",
              name,
              spanId: "span-1",
              traceId: "trace-1",
              parent,
              context,
              status: { _tag: "Started", startTime },
              attributes: new Map(),
              links,
              sampled: true,
              kind,
              end: () => {},
              attribute: () => {},
              event: () => {},
              addLinks: () => {}
            }) as Tracer.Span,
          context: (f) => f()
        })),
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      assert.strictEqual(lines.length, 1)
      const line = lines[0]!
      assert.notMatch(line, /[\n\u202e]/)
      const entry = JSON.parse(line)
      assert.strictEqual(entry.level, "WARN")
      assert.strictEqual(entry.message, "hello\nforged \u202e")
      assert.deepStrictEqual(entry.annotations, { channel: "invocations", count: 3 })
      assert.strictEqual(entry.trace_id, "trace-1")
      assert.strictEqual(entry.span_id, "span-1")
      assert.isString(entry.time)
    }))
})
