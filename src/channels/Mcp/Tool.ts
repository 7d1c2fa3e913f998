/**
 * The one tool the MCP channel offers: the hosted agent, asked a prompt in a session. Its definition (what
 * `tools/list` shows) and the checks of its arguments (plain checks with a message a model can act on).
 */

// A session comes back to the caller and is sent again: printable ASCII, no edge spaces, as Invocations' ids.
const sessionPattern = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/

/** Longest accepted `session` argument. */
export const maxSessionLength = 200

export interface ToolArguments {
  readonly prompt: string
  /** Absent: a new session, whose id the result carries. */
  readonly session: string | undefined
}

/** The tool as `tools/list` shows it: JSON Schemas of its input and of its structured output. */
export const definition = (name: string, description: string) => ({
  name,
  title: "Ask the agent",
  description,
  inputSchema: {
    type: "object" as const,
    properties: {
      prompt: { type: "string", minLength: 1, description: "What to say to the agent." },
      session: {
        type: "string",
        minLength: 1,
        maxLength: maxSessionLength,
        description: "The session of an earlier call, to continue that conversation; omit to start a new one."
      }
    },
    required: ["prompt"],
    additionalProperties: false
  },
  outputSchema: {
    type: "object" as const,
    properties: {
      response: { type: "string", description: "The agent's reply." },
      session: { type: "string", description: "Pass it as `session` to continue this conversation." }
    },
    required: ["response", "session"]
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
})

/** The arguments of a call, or why they are not acceptable. */
export const parseArguments = (args: unknown): ToolArguments | { readonly problem: string } => {
  if (args === undefined || args === null || typeof args !== "object" || Array.isArray(args)) {
    return { problem: "arguments must be an object with a `prompt` string" }
  }
  const { prompt, session, ...rest } = args as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) return { problem: `unknown argument ${JSON.stringify(unknown[0]!.slice(0, 64))}` }
  if (prompt === undefined) return { problem: "prompt is required" }
  if (typeof prompt !== "string" || prompt.trim().length === 0) return { problem: "prompt must be a non-empty string" }
  if (session === undefined) return { prompt, session: undefined }
  if (typeof session !== "string" || session.length === 0) return { problem: "session must be a non-empty string" }
  if (session.length > maxSessionLength) return { problem: `session must be at most ${maxSessionLength} characters` }
  if (!sessionPattern.test(session)) {
    return { problem: "session must be printable ASCII (letters, digits, punctuation; spaces only inside)" }
  }
  return { prompt, session }
}
