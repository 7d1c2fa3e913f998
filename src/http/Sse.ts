/**
 * Server-sent events: framing, and a response whose body writes every chunk of ready events at once.
 */
import { HttpServerResponse } from "@effect/platform"
import { Chunk, Stream } from "effect"

const encoder = new TextEncoder()

/** One SSE frame. Multi-line data becomes several `data:` lines, as the format requires. */
export const frame = (data: string, event?: string, id?: string): string => {
  let out = ""
  if (id !== undefined) out += `id: ${id}\n`
  if (event !== undefined) out += `event: ${event}\n`
  const lines = data.split(/\r\n|\r|\n/)
  for (const line of lines) out += `data: ${line}\n`
  return out + "\n"
}

export const comment = (text: string): string => `: ${text}\n\n`

export const sseHeaders = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
} as const

/** A `text/event-stream` response from a stream of frames; frames ready together are written together. */
export const response = <E>(
  frames: Stream.Stream<string, E>,
  headers?: Record<string, string>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    Stream.mapChunks(frames, (chunk) => {
      let text = ""
      for (const f of chunk) text += f
      return text.length === 0 ? Chunk.empty<Uint8Array>() : Chunk.of(encoder.encode(text))
    }),
    {
      contentType: "text/event-stream",
      headers: headers === undefined ? sseHeaders : { ...sseHeaders, ...headers }
    }
  )
