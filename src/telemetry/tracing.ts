/**
 * The tracing half of telemetry: the tracer provider, its exporters and the gRPC
 * instrumentation. index.ts imports this file only when tracing is configured, so a service
 * without tracing never loads the trace SDK, an OTLP exporter, import-in-the-middle or the
 * gRPC instrumentation.
 */
import { context, propagation, type TracerProvider, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
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

export interface Tracing {
  provider: BasicTracerProvider;
  requests: RequestTracing;
}

/** The global tracer provider, propagator and context manager; gRPC instrumented. */
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
export async function startTracingTo(
  exporters: readonly SpanExporter[],
  s: Pick<TelemetrySettings, "sampler" | "batchSpans">,
  resource: Resource,
  version: string,
): Promise<Tracing> {
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
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  await instrumentGrpc(provider);
  return {
    provider,
    requests: { tracer: provider.getTracer("icmpfwd", version), sampler: requestSampler },
  };
}
