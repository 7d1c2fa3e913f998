/**
 * Counts Effect steps: every instruction a supervised fiber evaluates (`Effect.supervised(counter)` with
 * `RuntimeFlags.OpSupervision` enabled). A figure that does not move with the load on the machine, unlike time.
 */
import type { Fiber } from "effect"
import { Effect, Supervisor } from "effect"

export class StepCounter extends Supervisor.AbstractSupervisor<number> {
  steps = 0
  get value() {
    return Effect.sync(() => this.steps)
  }
  override onEffect<A, E>(_fiber: Fiber.RuntimeFiber<A, E>, _effect: Effect.Effect<unknown, unknown, unknown>) {
    this.steps++
  }
}
