// `npm start`: runs the pre-built bundle dist/main.cjs, rebuilding it first when src/ (or the dependencies)
// changed since it was built. Plain JavaScript so it starts without tsx; esbuild is loaded only to rebuild.
//
// The bundle is compiled with V8's code cache: the bytecode of every function the previous start compiled is
// read back instead of parsed and compiled again (what Node 22's module.enableCompileCache does; Node 20 has
// only vm.Script's cachedData). The cache belongs to one build (its file is named by the build's id) and is
// written once per build, after the host has started (or when it exits first). The packages only optional features
// use are in a second bundle (dist/lazy.cjs, with its own cache), compiled only when one of them is first required.
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { createRequire, Module } from "node:module"
import { dirname } from "node:path"
import * as Vm from "node:vm"
import { bundleFile, cacheFile, currentBuild, lazyFile } from "./bundle.mjs"

let buildId = currentBuild()
if (buildId === undefined) {
  const missing = statSync(bundleFile, { throwIfNoEntry: false }) === undefined
  const started = performance.now()
  const { build } = await import("./build.mjs")
  buildId = (await build()).buildId
  process.stderr.write(
    `${missing ? "no bundle in dist/" : "src/ changed since dist/main.cjs was built"}: rebuilt it in ${
      Math.round(performance.now() - started)
    } ms\n`
  )
}

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
  // latin1: the bundles are ASCII (scripts/build.mjs), and this is much faster than decoding UTF-8.
  const script = new Vm.Script(Module.wrap(readFileSync(file, "latin1")), {
    filename: file,
    cachedData,
    // import() in the bundle (there is none today) behaves as in any module (Node >= 20.12).
    importModuleDynamically: Vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER
  })

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

run(bundleFile, "main", mainRequire)
