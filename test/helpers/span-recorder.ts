/**
 * Request telemetry set up as `icmpfwd serve` sets it up (RequestSampler as sampler and id
 * generator), recording every finished span in memory, for the telemetry tests. Each test gets
 * a fresh exporter (shutting a provider down stops its exporter for good): call reset() after
 * each.
 */
import type { Tracer } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { OtelCallTelemetry } from "../../src/telemetry/call-spans.js";
import { RequestSampler } from "../../src/telemetry/request-sampling.js";
import { OtelRequestTelemetry } from "../../src/telemetry/request-spans.js";
import type { SamplerSetting } from "../../src/telemetry/settings.js";

export type CountingTelemetry = OtelRequestTelemetry & { startSpan: { calls: number } };

export class SpanRecorder {
  private provider: BasicTracerProvider | null = null;
  private tracer: Tracer | null = null;
  exporter = new InMemorySpanExporter();
  /** Spans started, sampled or not (a processor sees every recording span at its start). */
  started = 0;

  /**
   * Request telemetry recording every span (or as `sampler` says); `startSpan` counts the
   * tracer's startSpan calls.
   */
  tracing(o: { sampler?: SamplerSetting } = {}): CountingTelemetry {
    const sampler = new RequestSampler(o.sampler ?? { kind: "parentbased_always_on" });
    this.started = 0;
    const startCounter: SpanProcessor = {
      onStart: () => {
        this.started++;
      },
      onEnd: () => {},
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    this.provider = new BasicTracerProvider({
      sampler,
      idGenerator: sampler,
      spanProcessors: [startCounter, new SimpleSpanProcessor(this.exporter)],
    });
    const tracer = this.provider.getTracer("test");
    const startSpan = { calls: 0 };
    const sdkStartSpan = tracer.startSpan.bind(tracer);
    tracer.startSpan = (...args) => {
      startSpan.calls++;
      return sdkStartSpan(...args);
    };
    this.tracer = tracer;
    return Object.assign(new OtelRequestTelemetry({ tracer, sampler }, null), { startSpan });
  }

  /** The gRPC calls' spans, on the provider tracing() set up (call it first). */
  calls(): OtelCallTelemetry {
    if (this.tracer === null) throw new Error("tracing() first");
    return new OtelCallTelemetry(this.tracer);
  }

  /** The finished spans called `name`, in the order they ended. */
  named(name: string): ReadableSpan[] {
    return this.exporter.getFinishedSpans().filter((s) => s.name === name);
  }

  async reset(): Promise<void> {
    await this.provider?.shutdown();
    this.provider = null;
    this.tracer = null;
    this.exporter = new InMemorySpanExporter();
  }
}
