/**
 * The tracing half of telemetry: the tracer provider, its exporters, and the hooks that make
 * the spans (requests: request-spans.ts; gRPC calls: call-spans.ts). index.ts imports this file
 * only when tracing is configured, so a service without tracing never loads the trace SDK or an
 * OTLP exporter. No global context manager is installed: an AsyncLocalStorage one (promise
 * hooks on every async step) cost a fifth of the decision rate, and every span here gets its
 * parent explicitly.
 */
import { trace } from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { OtelCallTelemetry } from "./call-spans.js";
import { StderrSpanExporter } from "./console-span-exporter.js";
import { RequestSampler } from "./request-sampling.js";
import type { RequestTracing } from "./request-spans.js";
import type { OtlpProtocol, TelemetrySettings } from "./settings.js";

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

export interface Tracing {
  provider: BasicTracerProvider;
  requests: RequestTracing;
  /** A span per gRPC call the service takes. */
  calls: OtelCallTelemetry;
}

/** The tracer provider (also the global one) and the hooks that start spans from it. */
export async function startTracing(
  s: TelemetrySettings,
  resource: Resource,
  version: string,
): Promise<Tracing> {
  const exporters: SpanExporter[] = [];
  for (const kind of s.traces)
    exporters.push(
      kind === "console" ? new StderrSpanExporter() : await otlpSpanExporter(s.tracesProtocol),
    );
  return startTracingTo(exporters, s, resource, version);
}

/**
 * startTracing with the exporters given (the benchmark's measures tracing as the daemon sets it
 * up, with an exporter that drops the spans).
 */
export function startTracingTo(
  exporters: readonly SpanExporter[],
  s: Pick<TelemetrySettings, "sampler" | "batchSpans">,
  resource: Resource,
  version: string,
): Tracing {
  // Request spans are sampled before they start, on the trace ids this generator then gives.
  const requestSampler = new RequestSampler(s.sampler);
  const provider = new BasicTracerProvider({
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
  trace.setGlobalTracerProvider(provider);
  const tracer = provider.getTracer("icmpfwd", version);
  return {
    provider,
    requests: { tracer, sampler: requestSampler },
    calls: new OtelCallTelemetry(tracer),
  };
}
