/**
 * HTTP load: `wrk` when installed (one thread, a Lua script for the POST body), otherwise autocannon's bin.
 * Either runs pinned to the load core, bounded in duration and connections, against loopback only.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { lastJsonLine, pinned, pinning, root, run, tempDir, which } from "./Processes.js"

export interface LoadOptions {
  readonly url: string
  readonly body: string
  readonly connections: number
  readonly durationSeconds: number
}

export interface LoadResult {
  readonly requestsPerSecond: number
  readonly requests: number
  /** Latency percentiles, milliseconds. */
  readonly p50: number
  readonly p99: number
  /** Responses that were not 2xx, plus socket errors and timeouts. */
  readonly failures: number
}

export type Loader = "wrk" | "autocannon"

export const chooseLoader = (wanted: "auto" | Loader): Loader => {
  if (wanted === "autocannon") return "autocannon"
  const hasWrk = which("wrk")
  if (wanted === "wrk" && !hasWrk) throw new Error("--loader wrk: wrk is not installed (apt-get install -y wrk)")
  return hasWrk ? "wrk" : "autocannon"
}

const assertLoopback = (url: string) => {
  const host = new URL(url).hostname
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "[::1]") {
    throw new Error(`the bench only loads loopback servers, not ${host}`)
  }
}

const luaString = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")}"`

const toMillis = (value: string): number => {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(value.trim())
  if (match === null) return NaN
  const n = Number(match[1])
  switch (match[2]) {
    case "us":
      return n / 1_000
    case "ms":
      return n
    case "s":
      return n * 1_000
    default:
      return n * 60_000
  }
}

/** Parses `wrk --latency` output. */
export const parseWrk = (output: string): LoadResult => {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1])
  const requests = Number(/(\d+) requests in/.exec(output)?.[1])
  const p50 = toMillis(/^\s+50%\s+(\S+)/m.exec(output)?.[1] ?? "")
  const p99 = toMillis(/^\s+99%\s+(\S+)/m.exec(output)?.[1] ?? "")
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((n, s) => n + Number(s), 0)
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${output}`)
  return { requestsPerSecond: rps, requests, p50, p99, failures: non2xx + socketErrors }
}

const runWrk = async (options: LoadOptions): Promise<LoadResult> => {
  const dir = tempDir("bench-wrk")
  const script = Path.join(dir, "post.lua")
  Fs.writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = ${luaString(options.body)}\nwrk.headers["Content-Type"] = "application/json"\n`
  )
  const { args, command } = pinned(pinning.load, "wrk", [
    "-t1",
    `-c${options.connections}`,
    `-d${options.durationSeconds}s`,
    "--timeout",
    "5s",
    "--latency",
    "-s",
    script,
    options.url
  ])
  const result = await run(command, args, (options.durationSeconds + 15) * 1_000)
  Fs.rmSync(dir, { recursive: true, force: true })
  if (result.code !== 0) throw new Error(`wrk failed (${result.code}): ${result.stderr}${result.stdout}`)
  return parseWrk(result.stdout)
}

interface AutocannonJson {
  readonly requests: { readonly average: number; readonly total: number }
  readonly latency: { readonly p50: number; readonly p99: number }
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
}

const runAutocannon = async (options: LoadOptions): Promise<LoadResult> => {
  const bin = Path.join(root, "node_modules/autocannon/autocannon.js")
  const { args, command } = pinned(pinning.load, process.execPath, [
    bin,
    "-c",
    String(options.connections),
    "-d",
    String(options.durationSeconds),
    "-t",
    "5",
    "-m",
    "POST",
    "-H",
    "content-type=application/json",
    "-b",
    options.body,
    "-j",
    options.url
  ])
  const result = await run(command, args, (options.durationSeconds + 20) * 1_000)
  const json = lastJsonLine<AutocannonJson>(result.stdout)
  if (json === undefined) throw new Error(`autocannon failed (${result.code}): ${result.stderr}`)
  return {
    requestsPerSecond: json.requests.total / options.durationSeconds,
    requests: json.requests.total,
    p50: json.latency.p50,
    p99: json.latency.p99,
    failures: json.non2xx + json.errors + json.timeouts
  }
}

/** One bounded load run against a loopback URL. */
export const load = (loader: Loader, options: LoadOptions): Promise<LoadResult> => {
  assertLoopback(options.url)
  if (options.connections > 1_000) throw new Error("at most 1000 connections")
  if (options.durationSeconds > 120) throw new Error("at most 120 s per run")
  return loader === "wrk" ? runWrk(options) : runAutocannon(options)
}
