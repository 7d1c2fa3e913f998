// `npm start`: runs the pre-built bundle dist/main.cjs, rebuilding it first when src/ (or the dependencies)
// changed since it was built. Plain CommonJS so it starts without tsx, and without the ES module loader (~10 ms
// of a start on Node 20); esbuild is loaded only to rebuild.
//
// The bundle is compiled with V8's code cache: the bytecode of every function the previous start compiled is
// read back instead of parsed and compiled again (what Node 22's module.enableCompileCache does; Node 20 has
// only vm.Script's cachedData). The cache belongs to one build (its file is named by the build's id) and is
// written once per build, after the host has started (or when it exits first). The packages only optional features
// use are in a second bundle (dist/lazy.cjs, with its own cache), compiled only when one of them is first required.
"use strict"
const { readFileSync, renameSync, statSync, writeFileSync } = require("node:fs")
const { createRequire, Module } = require("node:module")
const { dirname } = require("node:path")
const Vm = require("node:vm")
const { bundleFile, cacheFile, currentBuild, lazyFile } = require("./bundle.cjs")
const V8 = require("node:v8")

/**
 * Runs a bundle as Node's CommonJS loader runs a file (the wrapper called with a require that resolves from
 * dist/), compiled with its code cache; resolves `module.exports`. `requireFor` gives the bundle its require.
 */
const run = (file, name, requireFor) => {
  const cachePath = cacheFile(buildId, name)
  let cachedData
  try {
    cachedData = readFileSync(cachePath)
  } catch {
    cachedData = undefined
  }
  // The host turns V8's allocation-site pretenuring off once it has started (src/internal/V8Tuning.ts), before
  // the cache is written: the cache records the flags, so compile under that flag too (else every start would
  // reject the cache), then give the start back its default until the host has turned it off.
  V8.setFlagsFromString("--no-allocation-site-pretenuring")
  // latin1: the bundles are ASCII (scripts/build.mjs), and this is much faster than decoding UTF-8.
  const script = new Vm.Script(Module.wrap(readFileSync(file, "latin1")), {
    filename: file,
    cachedData,
    // import() in the bundle (there is none today) behaves as in any module (Node >= 20.12).
    importModuleDynamically: Vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER
  })

  if (globalThis[Symbol.for("effect-agent-host/v8-tuned")] !== true) {
    V8.setFlagsFromString("--allocation-site-pretenuring")
  }

  if (cachedData === undefined || script.cachedDataRejected === true) {
    let written = false
    const writeCache = () => {
      if (written) return
      written = true
      try {
        const temp = `${cachePath}.${process.pid}.tmp`
        writeFileSync(temp, script.createCachedData())
        renameSync(temp, cachePath)
      } catch {
        // Only a slower next start.
      }
    }
    setTimeout(writeCache, 5_000).unref()
    process.once("exit", writeCache)
  }

  const module = { exports: {} }
  script.runInThisContext().call(module.exports, module.exports, requireFor(file), module, file, dirname(file))
  return module.exports
}

const plainRequire = (file) => createRequire(file)

// The main bundle's `require("./lazy.cjs")` (its first import of a package only optional features use) gets the
// lazy bundle compiled with its own code cache, once; everything else resolves from dist/ as usual.
let lazy
const mainRequire = (file) => {
  const base = createRequire(file)
  return Object.assign(
    (id) => id === "./lazy.cjs" ? (lazy ??= run(lazyFile, "lazy", plainRequire)) : base(id),
    { resolve: base.resolve, cache: base.cache, main: base.main }
  )
}

let buildId = currentBuild()
if (buildId === undefined) {
  const missing = statSync(bundleFile, { throwIfNoEntry: false }) === undefined
  const started = performance.now()
  import("./build.mjs").then(({ build }) => build()).then((built) => {
    buildId = built.buildId
    process.stderr.write(
      `${missing ? "no bundle in dist/" : "src/ changed since dist/main.cjs was built"}: rebuilt it in ${
        Math.round(performance.now() - started)
      } ms\n`
    )
    run(bundleFile, "main", mainRequire)
  }, (error) => {
    process.stderr.write(`cannot build dist/main.cjs: ${error?.stack ?? error}\n`)
    process.exitCode = 1
  })
} else {
  run(bundleFile, "main", mainRequire)
}
