/**
 * OpenTelemetry for `icmpfwd serve`: a tracer provider when tracing is asked for, a meter
 * provider with a Prometheus endpoint and/or an OTLP push, gRPC instrumentation for the admin
 * RPCs. `startTelemetry` must run before anything imports @grpc/grpc-js (main.ts imports the
 * service afterwards), so the instrumentation can hook it.
 */
import {
  context,
  type Meter,
  metrics,
  propagation,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
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
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { StderrSpanExporter } from "./console-span-exporter.js";
import { DecisionHistograms } from "./decision-histograms.js";
import { type MetricSources, registerServiceMetrics } from "./metrics.js";
import { RequestSampler } from "./request-sampling.js";
import { OtelRequestTelemetry, type RequestTracing } from "./request-spans.js";
import { startRuntimeMetrics } from "./runtime-metrics.js";
import type { OtlpProtocol, TelemetrySettings } from "./settings.js";

export { type TelemetryFlags, TelemetrySettingsError, telemetrySettings } from "./settings.js";

export class TelemetryStartError extends Error {}

export interface Telemetry {
  readonly settings: TelemetrySettings;
  /** Whether spans are made (and events carry a traceparent). */
  readonly tracing: boolean;
  /** The dispatcher's hooks; null when neither traces nor metrics are on. */
  readonly requests: OtelRequestTelemetry | null;
  /** `http://host:port/metrics`, or null when Prometheus is off. */
  readonly metricsUrl: string | null;
  /** Registers the observable metrics over the running service and netstack. */
  observe(src: MetricSources): void;
  /** Flushes and stops exporters (spans still queued are sent). */
  shutdown(): Promise<void>;
}

/** The OTLP span exporter for the protocol; each reads its endpoint and headers from OTEL_*. */
async function otlpSpanExporter(p: OtlpProtocol): Promise<SpanExporter> {
  switch (p) {
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter();
    case "http/json":
      return new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter();
    case "grpc":
      return new (await import("@opentelemetry/exporter-trace-otlp-grpc")).OTLPTraceExporter();
  }
}

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

/**
 * Hooks @grpc/grpc-js for the admin RPCs' spans. grpc-js is CommonJS loaded from ESM, so the
 * instrumentation needs import-in-the-middle's loader hook, registered before the first import.
 */
async function instrumentGrpc(provider: TracerProvider): Promise<void> {
  const { register } = await import("node:module");
  const { createAddHookMessageChannel } = await import("import-in-the-middle");
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register("import-in-the-middle/hook.mjs", import.meta.url, registerOptions);
  const { GrpcInstrumentation } = await import("@opentelemetry/instrumentation-grpc");
  const { registerInstrumentations } = await import("@opentelemetry/instrumentation");
  registerInstrumentations({
    instrumentations: [new GrpcInstrumentation()],
    tracerProvider: provider,
  });
  await waitForAllMessagesAcknowledged();
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
  let tracerProvider: BasicTracerProvider | null = null;
  let tracing: RequestTracing | null = null;
  if (s.traces.length > 0) {
    const exporters: SpanExporter[] = [];
    for (const kind of s.traces)
      exporters.push(
        kind === "console" ? new StderrSpanExporter() : await otlpSpanExporter(s.tracesProtocol),
      );
    // Request spans are sampled before they start, on the trace ids this generator then gives.
    const requestSampler = new RequestSampler(s.sampler);
    tracerProvider = new BasicTracerProvider({
      resource,
      sampler: requestSampler,
      idGenerator: requestSampler,
      // Batched export: a full queue drops spans rather than slowing packets down.
      spanProcessors: exporters.map(
        (e) =>
          new BatchSpanProcessor(e, {
            scheduledDelayMillis: s.batchSpans.scheduleDelayMs,
            maxQueueSize: s.batchSpans.maxQueueSize,
            maxExportBatchSize: s.batchSpans.maxExportBatchSize,
          }),
      ),
    });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(tracerProvider);
    await instrumentGrpc(tracerProvider);
    tracing = { tracer: tracerProvider.getTracer("icmpfwd", version), sampler: requestSampler };
  }

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
    metricsUrl:
      prometheus === null || s.metricsListen === null
        ? null
        : `http://${host.includes(":") ? `[${host}]` : host}:${s.metricsListen.port}/metrics`,
    observe(src: MetricSources): void {
      if (meter !== null) registerServiceMetrics(meter, src);
    },
    async shutdown(): Promise<void> {
      stopRuntime?.();
      await Promise.allSettled([tracerProvider?.shutdown(), meterProvider?.shutdown()]);
    },
  };
}
