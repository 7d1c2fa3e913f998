/**
 * Effect's metric registry in the Prometheus text exposition format (version 0.0.4): one `# HELP` and `# TYPE`
 * per metric name, then a sample per label set. Counters and gauges are one sample; histograms their cumulative
 * `_bucket{le=…}` samples, `_sum` and `_count`; summaries their quantiles, `_sum` and `_count`; frequencies a
 * counter per occurrence (label `key`). Names are sanitized and label values escaped, so no label value a caller
 * influenced (a channel name) can break the format.
 */
import { MetricState, Option } from "effect"
import type { MetricPair } from "effect"

/** The content type a scraper expects for this format. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** A metric name: anything outside `[a-zA-Z0-9_:]` becomes `_`, and it never starts with a digit. */
export const metricName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return cleaned === "" || /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned
}

/** A label name: anything outside `[a-zA-Z0-9_]` becomes `_`, and it never starts with a digit. */
export const labelName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return cleaned === "" || /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned
}

/** A label value: backslash, double quote and line feed escaped, as the format requires. */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

/** HELP text: backslash and line feed escaped. */
const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** A sample value: integers as they are, `+Inf`, `-Inf`, `NaN` spelled as the format spells them. */
export const formatValue = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}

type Labels = ReadonlyArray<readonly [string, string]>

const labelSet = (labels: Labels): string =>
  labels.length === 0 ?
    "" :
    `{${labels.map(([key, value]) => `${labelName(key)}="${escapeLabelValue(value)}"`).join(",")}}`

const sample = (name: string, labels: Labels, value: number | bigint) =>
  `${name}${labelSet(labels)} ${formatValue(value)}\n`

type Kind = "counter" | "gauge" | "histogram" | "summary"

const kindOf = (state: MetricState.MetricState.Untyped): Kind | undefined => {
  if (MetricState.isCounterState(state) || MetricState.isFrequencyState(state)) return "counter"
  if (MetricState.isGaugeState(state)) return "gauge"
  if (MetricState.isHistogramState(state)) return "histogram"
  if (MetricState.isSummaryState(state)) return "summary"
  return undefined
}

const samplesOf = (name: string, labels: Labels, state: MetricState.MetricState.Untyped): string => {
  if (MetricState.isCounterState(state)) return sample(name, labels, state.count)
  if (MetricState.isGaugeState(state)) return sample(name, labels, state.value)
  if (MetricState.isFrequencyState(state)) {
    let out = ""
    for (const [key, count] of state.occurrences) out += sample(name, [...labels, ["key", key]], count)
    return out
  }
  if (MetricState.isHistogramState(state)) {
    // Effect's buckets are cumulative already; its boundaries end with +Inf (added when missing).
    let out = ""
    let sawInf = false
    for (const [bound, count] of state.buckets) {
      if (bound === Infinity) sawInf = true
      out += sample(`${name}_bucket`, [...labels, ["le", formatValue(bound)]], count)
    }
    if (!sawInf) out += sample(`${name}_bucket`, [...labels, ["le", "+Inf"]], state.count)
    return out + sample(`${name}_sum`, labels, state.sum) + sample(`${name}_count`, labels, state.count)
  }
  if (MetricState.isSummaryState(state)) {
    let out = ""
    for (const [quantile, value] of state.quantiles) {
      out += sample(name, [...labels, ["quantile", formatValue(quantile)]], Option.getOrElse(value, () => NaN))
    }
    return out + sample(`${name}_sum`, labels, state.sum) + sample(`${name}_count`, labels, state.count)
  }
  return ""
}

/**
 * The exposition of `pairs` (`Metric.unsafeSnapshot()`): grouped by name, names and label sets sorted so two
 * scrapes of the same state are byte-identical. A name registered with two kinds keeps the first kind only.
 */
export const format = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const groups = new Map<string, {
    readonly kind: Kind
    readonly help: string | undefined
    readonly samples: Array<{ readonly labels: Labels; readonly state: MetricState.MetricState.Untyped }>
  }>()
  for (const pair of pairs) {
    const kind = kindOf(pair.metricState)
    if (kind === undefined) continue
    const name = metricName(pair.metricKey.name)
    let group = groups.get(name)
    if (group === undefined) {
      group = { kind, help: Option.getOrUndefined(pair.metricKey.description), samples: [] }
      groups.set(name, group)
    } else if (group.kind !== kind) {
      continue
    }
    const labels = pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    group.samples.push({ labels, state: pair.metricState })
  }
  let out = ""
  for (const name of [...groups.keys()].sort()) {
    const group = groups.get(name)!
    if (group.help !== undefined) out += `# HELP ${name} ${escapeHelp(group.help)}\n`
    out += `# TYPE ${name} ${group.kind}\n`
    const rows = group.samples.map((s) => ({ key: labelSet(s.labels), s })).sort((a, b) =>
      a.key < b.key ? -1 : a.key > b.key ? 1 : 0
    )
    for (const { s } of rows) out += samplesOf(name, s.labels, s.state)
  }
  return out
}
