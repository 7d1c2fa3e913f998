/**
 * Checks the host makes before a request reaches a route: the `Host` header (DNS rebinding: a page on
 * `evil.example` resolving to 127.0.0.1 must not reach a loopback-bound host) and the content type of JSON
 * routes (a cross-site form or `text/plain` post is a "simple" request a browser sends without asking; a JSON
 * content type forces a CORS preflight, which this host never approves: it sends no CORS headers).
 */

/** True for `application/json` and `application/<anything>+json`, with or without parameters (`; charset=utf-8`). */
export const isJsonContentType = (header: string | undefined): boolean => {
  if (header === undefined) return false
  const semicolon = header.indexOf(";")
  const type = (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase()
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"))
}

/** True when `address` (the configured HOST) is a loopback address or name. */
export const isLoopback = (address: string): boolean => {
  const a = address.trim().toLowerCase()
  return a === "localhost" || a === "::1" || a === "[::1]" || /^127(?:\.\d{1,3}){3}$/.test(a)
}

const loopbackNames: ReadonlyArray<string> = ["localhost", "127.0.0.1", "[::1]"]

/** The name part of a `Host` header value, lower-cased: `Example.com:8000` → `example.com`, `[::1]:80` → `[::1]`. */
export const hostName = (header: string): string => {
  const value = header.trim().toLowerCase()
  if (value.startsWith("[")) {
    const close = value.indexOf("]")
    return close === -1 ? value : value.slice(0, close + 1)
  }
  const colon = value.indexOf(":")
  return colon === -1 ? value : value.slice(0, colon)
}

/**
 * The `Host` check, or undefined when every host is served (bound to a non-loopback address with no allowlist).
 * Bound to loopback, `localhost`, `127.0.0.1` and `[::1]` (any port) and the allowlist are served; with an
 * allowlist, only its names are served on any address. An entry matches the header's name, or the whole header
 * (`name:port`) when it names a port. A request without `Host` (HTTP/1.0) is not a browser's and is let through.
 */
export const hostCheck = (options: {
  readonly bind: string
  readonly listening: boolean
  readonly allowed: ReadonlyArray<string>
}): ((header: string | undefined) => boolean) | undefined => {
  const loopback = options.listening && isLoopback(options.bind)
  if (!loopback && options.allowed.length === 0) return undefined
  const names = new Set([...(loopback ? loopbackNames : []), ...options.allowed.map((h) => h.trim().toLowerCase())])
  const check = (header: string) => names.has(hostName(header)) || names.has(header.trim().toLowerCase())
  // Clients send the same Host on every request: the last answer is remembered (one entry, so nothing grows).
  let last: string | undefined
  let lastServed = false
  return (header) => {
    if (header === undefined) return true
    if (header !== last) {
      lastServed = check(header)
      last = header
    }
    return lastServed
  }
}
