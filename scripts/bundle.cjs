// Where the bundle is and whether it is current. Plain CommonJS with node built-ins only: the launcher
// (scripts/start.cjs) requires this on every `npm start`, so it must cost a few milliseconds, not an esbuild or
// tsx load (nor a crypto hash or a directory walk: a stat per input file, read from the stamp).
"use strict"
const { readdirSync, readFileSync, statSync } = require("node:fs")
const { join, relative, resolve } = require("node:path")

const root = resolve(__dirname, "..")
const outDir = join(root, "dist")
const bundleFile = join(outDir, "main.cjs")
/** The packages only optional features load, required by the main bundle on first use (see scripts/build.mjs). */
const lazyFile = join(outDir, "lazy.cjs")
/** What the bundle was built from: its build id, then each input's size, mtime and path (see `signature`). */
const stampFile = join(outDir, "main.inputs")
/** V8's code cache for one build of a bundle, "main" or "lazy" (written by scripts/start.cjs). */
const cacheFile = (buildId, name = "main") => join(outDir, `${name}.${buildId}.v8cache`)
const cacheFilePattern = /^(main|lazy)\.\w+\.v8cache$/

/** Besides the sources the bundle holds: dependency changes (manifest, lockfile) and the build settings. */
const alwaysInputs = ["package.json", "package-lock.json", "scripts/build.mjs", "scripts/bundle.cjs"]

const line = (path) => {
  const stat = statSync(join(root, path), { throwIfNoEntry: false })
  return `${stat === undefined ? "- -" : `${stat.size} ${stat.mtimeMs}`} ${path}`
}

const sources = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.isFile() ? [relative(root, path)] : []
  })

/**
 * Size and mtime of every file under src/ and of `alwaysInputs`, by path (relative to the package root); taken
 * before a build, so an edit made while it runs leaves the stamp stale and the next start rebuilds.
 */
const snapshot = () => new Map([...sources(join(root, "src")), ...alwaysInputs].map((p) => [p, line(p)]))

/** The stamp text for a build of `inputs` (the bundle's sources, from esbuild's metafile). */
const stamp = (buildId, before, inputs) =>
  [`build ${buildId}`, ...[...new Set([...inputs, ...alwaysInputs])].sort().map((p) => before.get(p) ?? line(p))]
    .join("\n") + "\n"

/**
 * The id of the build in dist/ when every file it was built from still has the recorded size and mtime, else
 * undefined (no bundle, or stale). An edit changes a file's mtime; a file the bundle did not hold only matters
 * once a file it held imports it, which is an edit of that file.
 */
const currentBuild = () => {
  let text
  try {
    text = readFileSync(stampFile, "utf8")
  } catch {
    return undefined
  }
  const [head, ...lines] = text.trimEnd().split("\n")
  const id = /^build (\w+)$/.exec(head ?? "")?.[1]
  if (id === undefined) return undefined
  for (const file of [bundleFile, lazyFile]) {
    if (statSync(file, { throwIfNoEntry: false }) === undefined) return undefined
  }
  for (const recorded of lines) {
    const path = recorded.split(" ").slice(2).join(" ")
    if (line(path) !== recorded) return undefined
  }
  return id
}

module.exports = {
  root,
  outDir,
  bundleFile,
  lazyFile,
  stampFile,
  cacheFile,
  cacheFilePattern,
  snapshot,
  stamp,
  currentBuild
}
