/**
 * Example workflow: collect three answers over several turns, then summarize.
 *
 * Turn 1 (any message) starts an execution that asks the first question and waits for the user; each next
 * message in the session answers one question. Every answer is recorded by an activity (an HTTP call when
 * `WORKFLOW_EXAMPLE_SIDE_EFFECT_URL` is set), then a `summarize` activity writes the summary. Outputs are text
 * (the questions, the summary) and structured values (each answer as `{ question, answer }`); the result is
 * `{ answers, summary }`.
 *
 * Activities run one after another: never `Effect.all` them with concurrency > 1 (Effect-TS/effect#6014).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Activity } from "@effect/workflow"
import { Config, Effect, Layer, Option, Schema } from "effect"
import * as WorkflowOutput from "../../src/workflow/WorkflowOutput.js"
import * as WorkflowTarget from "../../src/workflow/WorkflowTarget.js"

export const Summary = Schema.Struct({
  answers: Schema.Array(Schema.String),
  summary: Schema.String
})
export type Summary = typeof Summary.Type

export const questions = [
  "What is your name?",
  "What is your quest?",
  "What is your favourite colour?"
] as const

export const CollectAnswers = WorkflowTarget.makeWorkflow({ name: "CollectAnswers", success: Summary })

/** Where the activities' side effects go; none means they stay local. */
const sideEffectUrl = Config.option(Config.string("WORKFLOW_EXAMPLE_SIDE_EFFECT_URL"))

const post = (url: string, path: string, body: unknown, idempotencyKey: string) =>
  Effect.flatMap(HttpClient.HttpClient, (client) =>
    HttpClientRequest.post(`${url}${path}`).pipe(
      HttpClientRequest.setHeader("idempotency-key", idempotencyKey),
      HttpClientRequest.bodyUnsafeJson(body),
      client.execute,
      Effect.flatMap((response) => response.text),
      Effect.scoped
    ))

/** The workflow body; `url` is where the activities' side effects go (none: they stay local). */
export const makeExecute = (url: Option.Option<string>) => (payload: WorkflowTarget.TurnPayload, executionId: string) =>
  Effect.gen(function*() {
    yield* WorkflowOutput.text(`Let's collect three answers (started by "${payload.text}").\n`)
    const answers: Array<string> = []
    // One question at a time: each step suspends until the next message, each activity runs once.
    for (const [i, question] of questions.entries()) {
      const input = yield* WorkflowOutput.awaitInput(`Question ${i + 1}: ${question}`)
      yield* Activity.make({
        name: `record/${i + 1}`,
        execute: Effect.gen(function*() {
          if (Option.isNone(url)) return
          // The idempotency key lets the receiver drop the repeat of an in-flight call after a crash.
          const key = yield* Activity.idempotencyKey(`record/${i + 1}`)
          yield* post(url.value, "/record", { executionId, step: i + 1, answer: input.text }, key)
        }).pipe(Effect.orDie)
      })
      answers.push(input.text)
      yield* WorkflowOutput.value({ question: i + 1, answer: input.text })
    }
    const summary = yield* Activity.make({
      name: "summarize",
      success: Schema.String,
      execute: Effect.gen(function*() {
        const local = `Summary: ${answers.map((a, i) => `${i + 1}. ${a}`).join("; ")}`
        if (Option.isNone(url)) return local
        const key = yield* Activity.idempotencyKey("summarize")
        const remote = yield* post(url.value, "/summarize", { executionId, answers }, key)
        return remote.length > 0 ? remote : local
      }).pipe(Effect.orDie)
    })
    yield* WorkflowOutput.text(`\n${summary}`)
    return { answers, summary }
  })

/** The example as the host's target with its side effects sent to `url`; provide an engine. */
export const layerWith = (url: Option.Option<string>) => WorkflowTarget.layer(CollectAnswers, makeExecute(url))

/** The example as the host's target, configured from the environment; provide an engine. */
export const layer = Layer.unwrapEffect(Effect.map(sideEffectUrl, layerWith))
