/**
 * Reading an SSE response in a test: frames are collected in the background as they arrive; `ended` settles when
 * the server closes the stream ("closed") or the connection fails.
 */
export interface Frame {
  readonly event: string | undefined
  readonly data: string
}

export const collect = (response: Response) => {
  const frames: Array<Frame> = []
  const ended = (async () => {
    const decoder = new TextDecoder()
    let buffer = ""
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        const parts = buffer.split("\n\n")
        buffer = parts.pop()!
        for (const part of parts) {
          let event: string | undefined
          const data: Array<string> = []
          for (const line of part.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7)
            else if (line.startsWith("data: ")) data.push(line.slice(6))
          }
          if (data.length > 0) frames.push({ event, data: data.join("\n") })
        }
      }
      return "closed" as const
    } catch (error) {
      return `failed: ${String(error)}` as const
    }
  })()
  return { frames, ended }
}
