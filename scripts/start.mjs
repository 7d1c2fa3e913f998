// `npm start`: runs the pre-built bundle dist/main.cjs, rebuilding it first when src/ (or the dependencies)
// changed since it was built. Plain JavaScript so it starts without tsx; esbuild is loaded only to rebuild.
//
// The bundle is compiled with V8's code cache: the bytecode of every function the previous start compiled is
// read back instead of parsed and compiled again (what Node 22's module.enableCompileCache does; Node 20 has
// only vm.Script's cachedData). The cache belongs to one build (its file is named by the build's id) and is
// written once per build, after the host has started (or when it exits first).
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { createRequire, Module } from "node:module"
import { dirname } from "node:path"
import * as Vm from "node:vm"
import { bundleFile, cacheFile, currentBuild } from "./bundle.mjs"

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

const cachePath = cacheFile(buildId)
let cachedData
try {
  cachedData = readFileSync(cachePath)
} catch {
  cachedData = undefined
}
// latin1: the bundle is ASCII (scripts/build.mjs), and this is much faster than decoding UTF-8.
const script = new Vm.Script(Module.wrap(readFileSync(bundleFile, "latin1")), {
  filename: bundleFile,
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

// What Node's CommonJS loader does with a file: the wrapper called with a require that resolves from dist/.
const module = { exports: {} }
const require = createRequire(bundleFile)
script.runInThisContext().call(module.exports, module.exports, require, module, bundleFile, dirname(bundleFile))
