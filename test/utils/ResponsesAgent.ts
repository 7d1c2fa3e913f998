/**
 * A test agent for the Responses channel: the default agent, except that a message containing "explode" fails
 * mid-stream, "wait" pauses after the first word until the test opens the gate, and "think" streams
 * reasoning first.
 */
import { Deferred, Effect, Exit, FiberId, Stream } from "effect"
import * as Agent from "../../src/core/Agent.js"
import * as DefaultAgent from "../../src/core/DefaultAgent.js"
import { AgentError } from "../../src/domain/Errors.js"
import type { AgentResponseUpdate, Message } from "../../src/domain/Message.js"

let gate = Deferred.unsafeMake<void>(FiberId.none)

/** Closes the gate: "wait" turns pause until `openGate`. */
export const resetGate = () => {
  gate = Deferred.unsafeMake<void>(FiberId.none)
}
export const openGate = () => Deferred.unsafeDone(gate, Exit.void)

const lastText = (input: ReadonlyArray<Message>) => {
  const last = input[input.length - 1]
  return last === undefined ? "" : last.contents.map((c) => (c._tag === "text" ? c.text : "")).join("")
}

const text = (t: string): AgentResponseUpdate => ({
  messageId: "m1",
  role: "assistant",
  contents: [{ _tag: "text", text: t }]
})

export const agent = Agent.make({
  name: "responses-test-agent",
  stream: (turn) => {
    const said = lastText(turn.input)
    if (said.includes("explode")) {
      return Stream.concat(
        Stream.make(text("partial")),
        Stream.fail(new AgentError({ message: "the agent exploded" }))
      )
    }
    if (said.includes("wait")) {
      const waitFor = gate
      return Stream.make(text("first")).pipe(
        Stream.concat(Stream.fromEffect(Effect.as(Deferred.await(waitFor), text(" second")))),
        Stream.concat(Stream.make<Array<AgentResponseUpdate>>({
          contents: [{ _tag: "usage", usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 } }],
          finishReason: "stop"
        }))
      )
    }
    if (said.includes("think")) {
      return Stream.make<Array<AgentResponseUpdate>>(
        { messageId: "r1", role: "assistant", contents: [{ _tag: "reasoning", text: "Let me " }] },
        { messageId: "r1", role: "assistant", contents: [{ _tag: "reasoning", text: "think." }] },
        text("Thought"),
        text(" done."),
        { contents: [{ _tag: "usage", usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 } }] }
      )
    }
    return DefaultAgent.agent.stream(turn)
  }
})

export const layer = Agent.layer(agent)
