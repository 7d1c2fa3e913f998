/**
 * A small exact-match router: static paths in a map, parameterised paths checked segment by segment. One
 * app for all channels (no per-request router context), as the hot-path measurements recommend.
 */
import type { Route, RouteInput } from "../core/Channel.js"

export interface CompiledRoute {
  readonly route: Route
  readonly channel: string
  readonly fullPath: string
}

interface ParamRoute {
  readonly segments: ReadonlyArray<string>
  readonly byMethod: Map<string, CompiledRoute>
}

export interface Match {
  readonly route: CompiledRoute
  readonly params: RouteInput["params"]
}

export type Lookup =
  | { readonly _tag: "Found"; readonly match: Match }
  | { readonly _tag: "MethodNotAllowed"; readonly allowed: ReadonlyArray<string> }
  | { readonly _tag: "NotFound" }

const emptyParams: Readonly<Record<string, string>> = Object.freeze({})

export const joinPath = (base: string, path: string): string => {
  const joined = `/${base}/${path}`.replace(/\/+/g, "/")
  return joined.length > 1 && joined.endsWith("/") ? joined.slice(0, -1) : joined
}

export class Router {
  private readonly statics = new Map<string, Map<string, CompiledRoute>>()
  private readonly params: Array<ParamRoute> = []

  /** Adds a route; returns the route already there for the same method and path, if any. */
  add(compiled: CompiledRoute): CompiledRoute | undefined {
    const { fullPath, route } = compiled
    if (!fullPath.includes("/:")) {
      let byMethod = this.statics.get(fullPath)
      if (byMethod === undefined) {
        byMethod = new Map()
        this.statics.set(fullPath, byMethod)
      }
      const existing = byMethod.get(route.method)
      if (existing !== undefined) return existing
      byMethod.set(route.method, compiled)
      return undefined
    }
    const segments = fullPath.split("/").slice(1)
    let entry = this.params.find((p) => p.segments.join("/") === segments.join("/"))
    if (entry === undefined) {
      entry = { segments, byMethod: new Map() }
      this.params.push(entry)
    }
    const existing = entry.byMethod.get(route.method)
    if (existing !== undefined) return existing
    entry.byMethod.set(route.method, compiled)
    return undefined
  }

  find(method: string, path: string): Lookup {
    const normalized = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path
    const byMethod = this.statics.get(normalized)
    if (byMethod !== undefined) {
      const route = byMethod.get(method) ?? (method === "HEAD" ? byMethod.get("GET") : undefined)
      return route !== undefined ?
        { _tag: "Found", match: { route, params: emptyParams } } :
        { _tag: "MethodNotAllowed", allowed: [...byMethod.keys()] }
    }
    if (this.params.length === 0) return { _tag: "NotFound" }
    const parts = normalized.split("/").slice(1)
    for (const entry of this.params) {
      if (entry.segments.length !== parts.length) continue
      let params: Record<string, string> | undefined = {}
      for (let i = 0; i < parts.length; i++) {
        const segment = entry.segments[i]!
        const part = parts[i]!
        if (segment.startsWith(":")) {
          if (part.length === 0) {
            params = undefined
            break
          }
          params[segment.slice(1)] = safeDecode(part)
        } else if (segment !== part) {
          params = undefined
          break
        }
      }
      if (params === undefined) continue
      const route = entry.byMethod.get(method) ?? (method === "HEAD" ? entry.byMethod.get("GET") : undefined)
      return route !== undefined ?
        { _tag: "Found", match: { route, params } } :
        { _tag: "MethodNotAllowed", allowed: [...entry.byMethod.keys()] }
    }
    return { _tag: "NotFound" }
  }

  routes(): ReadonlyArray<CompiledRoute> {
    const out: Array<CompiledRoute> = []
    for (const byMethod of this.statics.values()) out.push(...byMethod.values())
    for (const entry of this.params) out.push(...entry.byMethod.values())
    return out
  }
}

const safeDecode = (s: string): string => {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
