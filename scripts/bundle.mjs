// Where the bundle is and whether it is current. Plain JavaScript with node built-ins only: the launcher
// (scripts/start.mjs) imports this on every `npm start`, so it must cost a few milliseconds, not an esbuild or
// tsx load.
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative, resolve } from "node:path"

export const root = resolve(import.meta.dirname, "..")
export const outDir = join(root, "dist")
export const bundleFile = join(outDir, "main.cjs")
/** The inputs' hash the bundle was built from (see `inputsHash`). */
export const stampFile = join(outDir, "main.inputs")
/** V8's code cache for the bundle built from these inputs (written by scripts/start.mjs). */
export const cacheFile = (hash) => join(outDir, `main.${hash.slice(0, 16)}.v8cache`)
export const cacheFilePattern = /^main\.\w+\.v8cache$/

const sources = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.isFile() && entry.name.endsWith(".ts") ? [path] : []
  })

/**
 * A hash of what the bundle depends on: the path, size and mtime of src/**\/*.ts, the package manifest and
 * lockfile (dependency changes) and these build scripts. Stat, not read: ~80 files, a few ms on every start.
 * An edit changes the mtime; a checkout or `touch` that leaves a file as it was rebuilds once, harmlessly.
 */
export const inputsHash = () => {
  const hash = createHash("sha1")
  const files = [
    ...sources(join(root, "src")).sort(),
    join(root, "package.json"),
    join(root, "package-lock.json"),
    join(root, "scripts/build.mjs"),
    join(root, "scripts/bundle.mjs")
  ]
  for (const file of files) {
    const stat = statSync(file, { throwIfNoEntry: false })
    hash.update(`${relative(root, file)}\0${stat === undefined ? "-" : `${stat.size}\0${stat.mtimeMs}`}\n`)
  }
  return hash.digest("hex")
}

/** The hash recorded by the last build, or undefined when dist/ has no complete bundle. */
export const builtHash = () => {
  if (!existsSync(bundleFile)) return undefined
  try {
    return readFileSync(stampFile, "utf8").trim()
  } catch {
    return undefined
  }
}
