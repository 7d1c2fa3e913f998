/**
 * The OpenTelemetry SDK behind `Telemetry.layer`: imported only when an OTLP endpoint is configured, so the host
 * does not load it otherwise. OTLP/HTTP (JSON) exporters, a batch span processor, a periodic metric reader over
 * Effect's metric registry, and a batch log processor fed by an Effect logger added beside the console one.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type { Resource } from "@effect/opentelemetry/Resource"
import { OTLPLogExporter } from "@opentelemetry/exporter-logs-otlp-http"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchLogRecordProcessor } from "@opentelemetry/sdk-logs"
import { PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Duration, Option } from "effect"
import type { Layer } from "effect"
import type { OtlpSettings } from "../Telemetry.js"

export const layer = (settings: OtlpSettings): Layer.Layer<Resource> =>
  NodeSdk.layer(() => ({
    resource: { serviceName: settings.serviceName },
    spanProcessor: Option.match(settings.traces, {
      onNone: () => undefined,
      onSome: (endpoint) =>
        new BatchSpanProcessor(new OTLPTraceExporter({ ...endpoint, headers: { ...endpoint.headers } }))
    }),
    metricReader: Option.match(settings.metrics, {
      onNone: () => undefined,
      onSome: (endpoint) =>
        new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter({ ...endpoint, headers: { ...endpoint.headers } }),
          exportIntervalMillis: Duration.toMillis(settings.metricInterval)
        })
    }),
    logRecordProcessor: Option.match(settings.logs, {
      onNone: () => undefined,
      onSome: (endpoint) =>
        new BatchLogRecordProcessor({
          exporter: new OTLPLogExporter({ ...endpoint, headers: { ...endpoint.headers } })
        })
    })
  }))
