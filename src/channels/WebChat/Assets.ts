/**
 * The web chat's static files, read once from `src/channels/WebChat/assets/` in this package and served from
 * memory with content types, validators and caching headers. The page is tiny, so it is rendered per base path at boot.
 *
 * The page renders agent Markdown with markdown-it (MIT), a dependency of this package: its browser build is
 * resolved from `node_modules` at startup and served by the host under the page's API path (no CDN), with the
 * license header it carries.
 */
import { HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { ChannelStartupError } from "../../domain/Errors.js"
import type { IncomingRequest } from "../../http/IncomingRequest.js"

export interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
  readonly headers: Readonly<Record<string, string>>
}

export interface Assets {
  readonly page: Asset
  readonly script: Asset
  readonly style: Asset
  /** The Markdown renderer's browser build (markdown-it, from `node_modules`). */
  readonly markdown: Asset
  /** Fingerprint of the scripts and style, put in their URLs so they can be cached for good. */
  readonly version: string
}

const encoder = new TextEncoder()

const fingerprint = (body: Uint8Array | string) => createHash("sha256").update(body).digest("base64url").slice(0, 16)

const asset = (body: Uint8Array, contentType: string, headers: Record<string, string>): Asset => ({
  body,
  contentType,
  etag: `"${fingerprint(body)}"`,
  headers: { "x-content-type-options": "nosniff", ...headers }
})

const escapeHtml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;")

// The page runs only its own script and style: no inline code, nothing from elsewhere.
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

/** Where the files are, relative to the package root. */
export const assetsPath = "src/channels/WebChat/assets"

/**
 * The package root: the nearest directory above this module with a `package.json`. This module runs from
 * `src/channels/WebChat/` (tsx, tests) or bundled into `dist/main.mjs` (`npm start`), so `import.meta.url`
 * alone does not say where `assets/` is; the package root does in both cases.
 */
const packageRoot = (from: string): string | undefined => {
  for (let dir = dirname(fileURLToPath(from));; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir
    if (dirname(dir) === dir) return undefined
  }
}

/** The package file of the Markdown renderer's browser build. */
export const markdownModule = "markdown-it/dist/markdown-it.min.js"

/**
 * Reads the files; fails (a defect: the package is broken) when one is missing. Read synchronously: four small
 * files, once, before the host listens (the asynchronous reads cost ~6 ms of a start in thread-pool round trips).
 */
export const load = (options: { readonly apiBase: string; readonly title: string }): Effect.Effect<Assets> =>
  Effect.gen(function*() {
    const read = (file: URL) =>
      Effect.try({
        try: () => readFileSync(file),
        catch: (cause) =>
          new ChannelStartupError({
            channel: "webchat",
            message: `web chat asset ${file.pathname} cannot be read`,
            cause
          })
      }).pipe(Effect.orDie)
    const root = yield* Effect.sync(() => packageRoot(import.meta.url))
    if (root === undefined || !existsSync(join(root, assetsPath))) {
      return yield* Effect.die(
        new ChannelStartupError({
          channel: "webchat",
          message: `the web chat's files (${assetsPath}) are not in the package above ${import.meta.url}: ` +
            "run the host from this package's checkout or installed copy"
        })
      )
    }
    const assetsDir = pathToFileURL(join(root, assetsPath, "/"))
    const local = (name: string) => read(new URL(name, assetsDir))
    const markdownPath = yield* Effect.try({
      // In this package's own node_modules when it is there (a checkout, the image): resolving through the
      // package's exports costs ~2 ms of a start; an installed copy (markdown-it beside it) resolves.
      try: () => {
        const own = join(root, "node_modules", markdownModule)
        return existsSync(own) ? own : createRequire(import.meta.url).resolve(markdownModule)
      },
      catch: (cause) =>
        new ChannelStartupError({
          channel: "webchat",
          message:
            `the web chat's Markdown renderer ${markdownModule} cannot be found: install the package's dependencies`,
          cause
        })
    }).pipe(Effect.orDie)
    const [html, script, style, markdown] = yield* Effect.all([
      local("index.html"),
      local("app.js"),
      local("style.css"),
      read(pathToFileURL(markdownPath))
    ])
    const version = fingerprint(Buffer.concat([script, style, markdown]))
    const page = html.toString("utf8")
      .replaceAll("{{API}}", escapeHtml(options.apiBase))
      .replaceAll("{{TITLE}}", escapeHtml(options.title))
      .replaceAll("{{VERSION}}", version)
    return {
      page: asset(encoder.encode(page), "text/html; charset=utf-8", {
        "cache-control": "no-cache",
        "content-security-policy": contentSecurityPolicy,
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY"
      }),
      script: asset(script, "text/javascript; charset=utf-8", {}),
      style: asset(style, "text/css; charset=utf-8", {}),
      markdown: asset(markdown, "text/javascript; charset=utf-8", {}),
      version
    }
  })

/**
 * Serves an asset: 304 when the validator matches; versioned URLs (`?v=<current>`) are immutable, anything
 * else must be revalidated.
 */
export const serve = (
  request: IncomingRequest,
  query: URLSearchParams,
  asset: Asset,
  version: string | undefined
): HttpServerResponse.HttpServerResponse => {
  const cacheControl = asset.headers["cache-control"] ??
    (version !== undefined && query.get("v") === version ? "public, max-age=31536000, immutable" : "no-cache")
  const headers = { ...asset.headers, "cache-control": cacheControl, etag: asset.etag }
  const match = request.headers["if-none-match"]
  if (match !== undefined && match.split(",").some((tag) => tag.trim().replace(/^W\//, "") === asset.etag)) {
    return HttpServerResponse.empty({ status: 304, headers })
  }
  return HttpServerResponse.uint8Array(asset.body, { contentType: asset.contentType, headers })
}
