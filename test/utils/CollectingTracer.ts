/**
 * The native tracer, remembering every span it starts: for tests of what is traced (span names, attributes).
 */
import { Effect, Tracer } from "effect"

export const make = Effect.map(Effect.tracer, (native) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })
  return { spans, tracer }
})
