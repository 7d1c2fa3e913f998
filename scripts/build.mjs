// Builds dist/main.cjs: src/main.ts bundled by esbuild into one file for `npm start` (loading ~80 modules
// through tsx took seconds), and dist/lazy.cjs beside it with the packages only optional features load. Run by `npm install` (`prepare`) and by scripts/start.cjs when the bundle is
// missing or stale; `node scripts/build.mjs` builds by hand.
//
// CommonJS, not ESM: scripts/start.cjs compiles it with a V8 code cache (`vm.Script` `cachedData`), which
// halves its compile and warm-up time; Node 20 has no code cache for ES modules.
import { build as esbuild } from "esbuild"
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { bundleFile, cacheFilePattern, lazyFile, outDir, root, snapshot, stamp, stampFile } from "./bundle.cjs"

/**
 * Not bundled: the optional native speed-ups `ws` tries to `require` inside a try/catch (bufferutil,
 * utf-8-validate); they resolve from node_modules as usual. better-sqlite3's JavaScript is bundled (read from the
 * code cache, not through Node's loader) and its addon loaded as `nativeAddon` says.
 */
const external = ["bufferutil", "utf-8-validate", "better-sqlite3/package.json"]

/**
 * better-sqlite3 finds its addon with the `bindings` package, which builds a stack trace and tries a dozen paths
 * (~4 ms of every start). In the bundle, `bindings` is this: the addon where better-sqlite3's install builds it,
 * `bindings` itself (from better-sqlite3's own directory) only when it is not there.
 */
const nativeAddon = () => ({
  name: "native-addon",
  setup(build) {
    build.onResolve(
      { filter: /^bindings$/ },
      (args) =>
        args.importer.includes(join("node_modules", "better-sqlite3")) ?
          { path: "bindings", namespace: "native-addon" } :
          undefined
    )
    build.onLoad({ filter: /.*/, namespace: "native-addon" }, () => ({
      contents: [
        "const path = require(\"node:path\")",
        "module.exports = (name) => {",
        "  const root = path.dirname(require.resolve(\"better-sqlite3/package.json\"))",
        "  try {",
        "    return require(path.join(root, \"build\", \"Release\", name))",
        "  } catch (error) {",
        "    if (error?.code !== \"MODULE_NOT_FOUND\") throw error",
        "  }",
        "  return require(require.resolve(\"bindings\", { paths: [root] }))({ bindings: name, module_root: root })",
        "}"
      ].join("\n"),
      loader: "js"
    }))
  }
})

/**
 * Packages that only optional features load (OpenTelemetry's SDK and exporters, the MCP and A2A SDKs with zod and
 * ajv, Postgres, msgpackr for the cluster, jose for Bot Framework, the OpenAI tokenizer, undici for the channels'
 * outgoing calls, ws): bundled apart into dist/lazy.cjs, which the main bundle requires on first use
 * (`require("./lazy.cjs")(name)`) and the launcher compiles with a code cache of its own. A default start then reads and compiles 2.9 MB instead of 7.2 MB (~19 ms
 * CPU less; docs/PERFORMANCE.md, cold start). None of them imports effect or a module of the main bundle (the
 * build checks that no module is in both), so nothing is loaded twice.
 */
const lazyPackages = [
  "@a2a-js/sdk",
  "@modelcontextprotocol/sdk",
  "@opentelemetry/",
  "ajv",
  "ajv-formats",
  "gpt-tokenizer",
  "jose",
  "msgpackr",
  "pg",
  "undici",
  "ws",
  "zod"
]
const isLazy = (specifier) =>
  lazyPackages.some((name) =>
    name.endsWith("/") ? specifier.startsWith(name) : specifier === name || specifier.startsWith(`${name}/`)
  )

/** In the main bundle, every import of a lazy package becomes a call into dist/lazy.cjs; `used` collects them. */
const lazyImports = (used) => ({
  name: "lazy-packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.namespace === "lazy-package" || !isLazy(args.path)) return undefined
      used.add(args.path)
      return { path: args.path, namespace: "lazy-package" }
    })
    build.onResolve({ filter: /^\.\/lazy\.cjs$/ }, () => ({ path: "./lazy.cjs", external: true }))
    build.onLoad({ filter: /.*/, namespace: "lazy-package" }, (args) => ({
      contents: `module.exports = require("./lazy.cjs")(${JSON.stringify(args.path)})`,
      loader: "js"
    }))
  }
})

/** dist/lazy.cjs: a function from a package name (as the main bundle imports it) to what `require` gives. */
const lazyEntry = (used) =>
  [
    "const packages = {",
    ...[...used].sort().map((name) => `  ${JSON.stringify(name)}: () => require(${JSON.stringify(name)}),`),
    "}",
    "module.exports = (name) => {",
    "  const load = packages[name]",
    "  if (load === undefined) throw new Error(`${name} is not in dist/lazy.cjs: rebuild with node scripts/build.mjs`)",
    "  return load()",
    "}"
  ].join("\n")

// The Effect packages whose index only re-exports modules: `export * as Effect from "./Effect.js"`.
const barrels = ["effect", "@effect/platform", "@effect/platform-node", "@effect/sql", "@effect/ai"]

/** Per barrel, what each name it exports is: a module namespace, or a named export of one module. */
const barrelExports = (pkg) => {
  const index = join(root, "node_modules", pkg, "dist/esm/index.js")
  const source = readFileSync(index, "utf8")
  const names = new Map()
  for (const [, name, file] of source.matchAll(/^export \* as (\w+) from "(\.\/[\w/]+\.js)";$/gm)) {
    names.set(name, { file: join(dirname(index), file), namespace: true })
  }
  for (const [, list, file] of source.matchAll(/^export \{([^}]*)\} from "(\.\/[\w/]+\.js)";$/gm)) {
    for (const name of list.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      names.set(name, { file: join(dirname(index), file), namespace: false })
    }
  }
  return names
}

/**
 * `import { Effect, Layer } from "effect"` in src/ becomes `import * as Effect from ".../effect/dist/esm/Effect.js"`
 * (the very module the index re-exports). Same bindings, but the bundle then holds only the modules the host
 * uses: through an index, esbuild keeps every module it re-exports once any of them is loaded lazily (the
 * OpenAI agent is), and @effect/platform-node's index drags in all of undici.
 */
const deepImports = () => {
  const known = new Map(barrels.map((pkg) => [pkg, barrelExports(pkg)]))
  const pattern = /^import \{([^}]*)\} from "(effect|@effect\/[\w-]+)"/gm
  return {
    name: "deep-imports",
    setup(build) {
      build.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
        const source = readFileSync(args.path, "utf8")
        const contents = source.replace(pattern, (statement, list, pkg) => {
          const exports = known.get(pkg)
          if (exports === undefined) return statement
          const kept = []
          const deep = []
          for (const specifier of list.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
            if (specifier.startsWith("type ")) continue
            const [name, local = name] = specifier.split(/\s+as\s+/)
            const target = exports.get(name)
            if (target === undefined) kept.push(specifier)
            else if (target.namespace) deep.push(`import * as ${local} from ${JSON.stringify(target.file)}`)
            else deep.push(`import { ${name} as ${local} } from ${JSON.stringify(target.file)}`)
          }
          if (kept.length > 0) deep.push(`import { ${kept.join(", ")} } from "${pkg}"`)
          // As many lines as before, so the lines after it keep their numbers (stack traces, source map).
          return deep.join("; ") + "\n".repeat(statement.split("\n").length - 1)
        })
        return { contents, loader: "ts" }
      })
    }
  }
}

/**
 * Writes dist/main.cjs and dist/lazy.cjs, their source maps and the stamp (what they were built from); resolves
 * with the build's id and the main bundle's size in bytes.
 */
export const build = async () => {
  const before = snapshot()
  const used = new Set()
  const result = await esbuild({
    ...common,
    entryPoints: [join(root, "src/main.ts")],
    outfile: bundleFile,
    plugins: [deepImports(), lazyImports(used), nativeAddon()]
  })
  const lazy = await esbuild({
    ...common,
    stdin: { contents: lazyEntry(used), resolveDir: root, sourcefile: "lazy-packages.cjs", loader: "js" },
    outfile: lazyFile,
    plugins: []
  })
  const shared = Object.keys(lazy.metafile.inputs).filter((path) => path in result.metafile.inputs)
  if (shared.length > 0) throw new Error(`in both dist/main.cjs and dist/lazy.cjs: ${shared.join(", ")}`)
  mkdirSync(outDir, { recursive: true })
  // Each file is written beside its target and renamed over it, so a host starting meanwhile (or a second
  // build) never reads half a file; the stamp goes last, so it only ever describes a complete bundle.
  let size = 0
  for (const file of [...lazy.outputFiles, ...result.outputFiles]) {
    const contents = file.path === bundleFile || file.path === lazyFile ? ascii(file.text) : file.contents
    const temp = `${file.path}.${process.pid}.tmp`
    writeFileSync(temp, contents)
    renameSync(temp, file.path)
    if (file.path === bundleFile) size = contents.length
  }
  // Code caches of earlier builds are never valid again.
  for (const name of readdirSync(outDir)) {
    if (cacheFilePattern.test(name)) rmSync(join(outDir, name), { force: true })
  }
  const buildId = `${Date.now().toString(36)}${process.pid.toString(36)}`
  // The bundle's own sources (paths relative to the package root; dependencies are covered by the lockfile).
  const sources = Object.keys(result.metafile.inputs).filter((path) =>
    !path.startsWith("..") && !path.includes("node_modules") && !path.startsWith("lazy-package:")
  )
  const temp = `${stampFile}.${process.pid}.tmp`
  writeFileSync(temp, stamp(buildId, before, sources))
  renameSync(temp, stampFile)
  return { buildId, size }
}

/** The settings both bundles are built with. */
const common = {
  absWorkingDir: root,
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  external,
  // import.meta does not exist in CommonJS: the modules that resolve files next to themselves get the bundle's
  // own location (they walk up to the package root from there); any other use of import.meta fails the build.
  banner: {
    js: "const __bundleUrl = require(\"node:url\").pathToFileURL(__filename).href;"
  },
  define: {
    "import.meta.url": "__bundleUrl",
    "import.meta.filename": "__filename",
    "import.meta.dirname": "__dirname"
  },
  logOverride: { "empty-import-meta": "error" },
  // Names and lines stay as written so stack traces are readable without the map; the map (for
  // `node --enable-source-maps`) points at the files in src/ rather than carrying copies of them.
  sourcemap: "linked",
  sourcesContent: false,
  minify: false,
  // Non-ASCII characters in code are escaped (see `ascii` below for comments).
  charset: "ascii",
  legalComments: "inline",
  logLevel: "warning",
  metafile: true,
  write: false
}

/**
 * The bundle as ASCII, so the launcher can read it as latin1 (a third of the time of decoding UTF-8). esbuild
 * escapes every non-ASCII character in code (`charset: "ascii"`) but leaves comments as they are: those few
 * characters become "?", one per UTF-16 unit, so columns (and the source map) stay right.
 */
const ascii = (text) => Buffer.from(text.replace(/[^\x00-\x7f]/g, "?"), "latin1")

if (import.meta.filename === process.argv[1]) {
  const started = performance.now()
  const { size } = await build()
  process.stdout.write(
    `built dist/main.cjs (${(size / 1e6).toFixed(1)} MB) in ${Math.round(performance.now() - started)} ms\n`
  )
}
