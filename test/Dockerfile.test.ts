/**
 * The container files, checked without a container runtime (CI builds the image only where one runs): a
 * hadolint-style rule set over the Dockerfile, plus consistency with the repository — every path it copies from
 * the build context exists, the state directory is a volume, the health check asks `/readiness`, the compose
 * example points the host at its collector and the collector's config file exists.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const read = (file: string) => Fs.readFileSync(Path.join(root, file), "utf8")

interface Instruction {
  readonly line: number
  readonly keyword: string
  readonly args: string
}

/** Instructions with continuation lines joined and comments dropped. */
export const parseDockerfile = (text: string): ReadonlyArray<Instruction> => {
  const out: Array<Instruction> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const start = i
    let current = lines[i]!.trim()
    if (current === "" || current.startsWith("#")) continue
    while (current.endsWith("\\") && i + 1 < lines.length) {
      current = current.slice(0, -1).trimEnd() + " " + lines[++i]!.trim()
    }
    const match = /^(\w+)\s+([\s\S]*)$/.exec(current)
    if (match === null) throw new Error(`Dockerfile line ${start + 1} is not an instruction: ${current}`)
    out.push({ line: start + 1, keyword: match[1]!.toUpperCase(), args: match[2]! })
  }
  return out
}

/** Hadolint-style findings (rule ids as hadolint names them where one exists). */
export const lintDockerfile = (instructions: ReadonlyArray<Instruction>): ReadonlyArray<string> => {
  const findings: Array<string> = []
  const stages: Array<string> = []
  let user: string | undefined
  let healthcheck = false
  for (const { args, keyword, line } of instructions) {
    const at = `line ${line}`
    switch (keyword) {
      case "FROM": {
        const [image, as, name] = args.split(/\s+/)
        if (image === undefined || !/:[\w.-]+$/.test(image) && !image.includes("@sha256:")) {
          findings.push(`DL3006 ${at}: pin the base image's tag (${image})`)
        }
        if (image?.endsWith(":latest")) findings.push(`DL3007 ${at}: do not use the latest tag`)
        if (as?.toUpperCase() !== "AS" || name === undefined) {
          findings.push(`${at}: name every stage (FROM ... AS name)`)
        } else stages.push(name)
        user = undefined
        break
      }
      case "USER":
        user = args.trim()
        break
      case "ADD":
        findings.push(`DL3020 ${at}: use COPY, not ADD`)
        break
      case "COPY": {
        const from = /--from=(\S+)/.exec(args)?.[1]
        if (from !== undefined && !stages.includes(from)) {
          findings.push(`DL3022 ${at}: --from=${from} is no earlier stage`)
        }
        break
      }
      case "RUN": {
        if (/\bapt-get install\b/.test(args)) {
          if (!args.includes("--no-install-recommends")) {
            findings.push(`DL3015 ${at}: apt-get install --no-install-recommends`)
          }
          if (!/\s-y\b|--yes/.test(args)) findings.push(`DL3014 ${at}: apt-get install -y`)
          if (!args.includes("rm -rf /var/lib/apt/lists")) findings.push(`DL3009 ${at}: delete the apt lists`)
        }
        if (/\bapt-get upgrade\b|\bapt-get dist-upgrade\b/.test(args)) findings.push(`DL3005 ${at}: no apt-get upgrade`)
        if (/\bnpm install\b/.test(args)) findings.push(`${at}: npm ci, not npm install (the lockfile decides)`)
        if (/\bsudo\b/.test(args)) findings.push(`DL3004 ${at}: no sudo`)
        if (/\bcd\s/.test(args)) findings.push(`DL3003 ${at}: use WORKDIR, not cd`)
        break
      }
      case "CMD":
      case "ENTRYPOINT":
        if (!args.trim().startsWith("[")) findings.push(`DL3025 ${at}: ${keyword} in JSON form`)
        break
      case "HEALTHCHECK":
        healthcheck = true
        break
      case "MAINTAINER":
        findings.push(`DL4000 ${at}: MAINTAINER is deprecated`)
        break
    }
  }
  if (stages.length < 2) findings.push("multi-stage: build and runtime stages")
  if (user === undefined || user === "root" || user === "0" || user.startsWith("0:")) {
    findings.push("DL3002: the final stage runs as a non-root USER")
  }
  if (!healthcheck) findings.push("the final stage has a HEALTHCHECK")
  return findings
}

describe("Dockerfile", () => {
  const instructions = parseDockerfile(read("Dockerfile"))

  it("passes the hadolint-style rules", () => {
    assert.deepStrictEqual(lintDockerfile(instructions), [])
  })

  it("the rules catch what they are for", () => {
    const bad = parseDockerfile([
      "FROM node",
      "ADD https://example.com/x.tgz /x",
      "RUN apt-get install python3",
      "RUN npm install",
      "COPY --from=nowhere /a /b",
      "CMD node main.js"
    ].join("\n"))
    const findings = lintDockerfile(bad).join("\n")
    for (const rule of ["DL3006", "DL3020", "DL3015", "DL3014", "DL3009", "npm ci", "DL3022", "DL3025", "DL3002"]) {
      assert.include(findings, rule)
    }
  })

  it("copies only what exists, keeps state on a volume, checks /readiness and runs the bundle", () => {
    const stateDir = instructions.find((i) => i.keyword === "ENV" && i.args.includes("AGENT_HOST_STATE_DIR"))
    const dir = /AGENT_HOST_STATE_DIR=(\S+)/.exec(stateDir?.args ?? "")?.[1]
    assert.isDefined(dir, "ENV AGENT_HOST_STATE_DIR")
    const volume = instructions.find((i) => i.keyword === "VOLUME")
    assert.include(volume?.args ?? "", dir!)
    assert.include(instructions.find((i) => i.keyword === "HEALTHCHECK")?.args ?? "", "/readiness")
    for (const copy of instructions.filter((i) => i.keyword === "COPY" && !i.args.includes("--from"))) {
      const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith("--"))
      for (const source of parts.slice(0, -1)) {
        assert.isTrue(Fs.existsSync(Path.join(root, source)), `COPY source ${source} (line ${copy.line}) exists`)
      }
    }
    // What the runtime stage runs is what `npm run build` produces, and the web chat's files it reads at startup.
    const build = read("scripts/bundle.cjs")
    assert.include(build, `join(outDir, "main.cjs")`)
    const cmd = instructions.filter((i) => i.keyword === "CMD").at(-1)
    assert.include(cmd?.args ?? "", "dist/main.cjs")
    assert.isTrue(Fs.existsSync(Path.join(root, "src/channels/WebChat/assets")))
    assert.include(read(".dockerignore"), "node_modules")
  })

  it("the compose example sends OTLP to its collector, whose config exists", () => {
    const compose = read("deploy/compose.yaml")
    assert.match(compose, /OTEL_EXPORTER_OTLP_ENDPOINT: http:\/\/otel-collector:4318/)
    assert.match(compose, /^ {2}otel-collector:$/m)
    assert.match(compose, /otel\/opentelemetry-collector-contrib:\d+\.\d+\.\d+/)
    const collector = read("deploy/otel-collector.yaml")
    assert.match(collector, /receivers:\n\s+otlp:/)
    for (const signal of ["traces", "metrics", "logs"]) assert.include(collector, `${signal}:`)
  })
})
