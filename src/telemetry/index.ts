/**
 * OpenTelemetry for `icmpfwd serve`: a tracer provider when tracing is asked for (tracing.ts,
 * imported only then) with the request and gRPC-call hooks the service calls, and a meter
 * provider with a Prometheus endpoint and/or an OTLP push.
 */
import { type Meter, metrics } from "@opentelemetry/api";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import {
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import {
  ConsoleMetricExporter,
  MeterProvider,
  type MetricReader,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
} from "@opentelemetry/sdk-metrics";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { CallTelemetry } from "../service/call-telemetry.js";
import { DecisionHistograms } from "./decision-histograms.js";
import { type MetricSources, registerServiceMetrics } from "./metrics.js";
import { OtelRequestTelemetry, type RequestTracing } from "./request-spans.js";
import { startRuntimeMetrics } from "./runtime-metrics.js";
import type { OtlpProtocol, TelemetrySettings } from "./settings.js";
import type { Tracing } from "./tracing.js";

export { type TelemetryFlags, TelemetrySettingsError, telemetrySettings } from "./settings.js";

export class TelemetryStartError extends Error {}

export interface Telemetry {
  readonly settings: TelemetrySettings;
  /** Whether spans are made (and events carry a traceparent). */
  readonly tracing: boolean;
  /** The dispatcher's hooks; null when neither traces nor metrics are on. */
  readonly requests: OtelRequestTelemetry | null;
  /** A span per gRPC call; null when tracing is off. */
  readonly calls: CallTelemetry | null;
  /** `http://host:port/metrics`, or null when Prometheus is off. */
  readonly metricsUrl: string | null;
  /** Registers the observable metrics over the running service and netstack. */
  observe(src: MetricSources): void;
  /** Flushes and stops exporters (spans still queued are sent). */
  shutdown(): Promise<void>;
}

/** The OTLP metric exporter for the protocol, loaded only when configured. */
async function otlpMetricExporter(p: OtlpProtocol): Promise<PushMetricExporter> {
  switch (p) {
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-metrics-otlp-proto")).OTLPMetricExporter();
    case "http/json":
      return new (await import("@opentelemetry/exporter-metrics-otlp-http")).OTLPMetricExporter();
    case "grpc":
      return new (await import("@opentelemetry/exporter-metrics-otlp-grpc")).OTLPMetricExporter();
  }
}

async function resourceOf(s: TelemetrySettings, version: string): Promise<Resource> {
  const detected = detectResources({ detectors: [envDetector] });
  await detected.waitForAsyncAttributes?.();
  return detected.merge(
    resourceFromAttributes({ [ATTR_SERVICE_NAME]: s.serviceName, [ATTR_SERVICE_VERSION]: version }),
  );
}

export async function startTelemetry(s: TelemetrySettings, version: string): Promise<Telemetry> {
  const resource = await resourceOf(s, version);
  // The trace SDK and its exporters load only when tracing is on.
  const traced: Tracing | null =
    s.traces.length > 0
      ? await (await import("./tracing.js")).startTracing(s, resource, version)
      : null;
  const tracing: RequestTracing | null = traced?.requests ?? null;

  // Collected by every reader beside the SDK's instruments (it can forget closed sessions).
  const decisions = new DecisionHistograms(
    s.metricsMaxSessions,
    { name: "icmpfwd", version },
    resource,
  );
  const metricProducers = [decisions];
  const readers: MetricReader[] = [];
  let prometheus: PrometheusExporter | null = null;
  if (s.metricsListen !== null) {
    prometheus = new PrometheusExporter({
      host: s.metricsListen.host,
      port: s.metricsListen.port,
      preventServerStart: true,
      metricProducers,
    });
    try {
      await prometheus.startServer();
    } catch (e) {
      throw new TelemetryStartError(
        `--metrics-listen ${s.metricsListen.host}:${s.metricsListen.port}: ${(e as Error).message}`,
      );
    }
    readers.push(prometheus);
  }
  for (const kind of s.metrics) {
    if (kind === "prometheus") continue;
    const exporter =
      kind === "console"
        ? new ConsoleMetricExporter()
        : await otlpMetricExporter(s.metricsProtocol);
    readers.push(
      new PeriodicExportingMetricReader({
        exporter,
        exportIntervalMillis: s.metricExportIntervalMs,
        metricProducers,
      }),
    );
  }
  const meterProvider = readers.length > 0 ? new MeterProvider({ resource, readers }) : null;
  if (meterProvider !== null) metrics.setGlobalMeterProvider(meterProvider);
  const meter: Meter | null = meterProvider?.getMeter("icmpfwd", version) ?? null;
  const stopRuntime = meterProvider && (await startRuntimeMetrics(meterProvider, version));

  const requests =
    tracing !== null || meter !== null
      ? new OtelRequestTelemetry(tracing, meter === null ? null : decisions)
      : null;
  const host = s.metricsListen?.host ?? "";
  return {
    settings: s,
    tracing: tracing !== null,
    requests,
    calls: traced?.calls ?? null,
    metricsUrl:
      prometheus === null || s.metricsListen === null
        ? null
        : `http://${host.includes(":") ? `[${host}]` : host}:${s.metricsListen.port}/metrics`,
    observe(src: MetricSources): void {
      if (meter !== null) registerServiceMetrics(meter, src);
    },
    async shutdown(): Promise<void> {
      stopRuntime?.();
      await Promise.allSettled([traced?.provider.shutdown(), meterProvider?.shutdown()]);
    },
  };
}
