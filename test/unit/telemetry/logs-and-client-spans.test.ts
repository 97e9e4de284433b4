/** Trace ids in the service's log lines, and the TypeScript client's decision span. */
import { Writable } from "node:stream";
import { context, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  endDecisionSpan,
  parentContext,
  startDecisionSpan,
} from "../../../clients/ts/src/tracing.js";
import { createLogger } from "../../../src/telemetry/logger.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

function lines(): { stream: Writable; out: Record<string, unknown>[] } {
  const out: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n")) if (l !== "") out.push(JSON.parse(l));
      done();
    },
  });
  return { stream, out };
}

describe("trace ids in logs and the client's decision span", () => {
  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
  });
  afterAll(async () => {
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  it("a log line written inside a span carries its trace_id and span_id", () => {
    const { stream, out } = lines();
    const log = createLogger("info", { traceContext: true, destination: stream });
    const span = provider.getTracer("t").startSpan("s");
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => log.info("inside"));
    log.info("outside");
    span.end();
    expect(out[0]).toMatchObject({
      msg: "inside",
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
    });
    expect(out[1].msg).toBe("outside");
    expect(out[1].trace_id).toBeUndefined();
  });

  it("without tracing, log lines carry no trace ids", () => {
    const { stream, out } = lines();
    const log = createLogger("info", { destination: stream });
    const span = provider.getTracer("t").startSpan("s");
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => log.info("inside"));
    span.end();
    expect(out[0].trace_id).toBeUndefined();
  });

  it("the client's decision span is a child of the request's traceparent", () => {
    exporter.reset();
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const d = startDecisionSpan(tp, { client: "c", requestId: 7n, sequence: 3 });
    expect(d).not.toBeNull();
    if (d !== null) endDecisionSpan(d, "reply");
    const [s] = exporter.getFinishedSpans();
    expect(s.name).toBe("icmpfwd.policy.decide");
    expect(s.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(s.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
    expect(s.attributes).toEqual({
      "icmpfwd.client": "c",
      "icmpfwd.request_id": "7",
      "icmp.sequence": 3,
      "icmpfwd.verdict": "reply",
    });
  });

  it("no decision span for an unsampled or missing traceparent", () => {
    expect(
      startDecisionSpan("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", {
        client: "c",
        requestId: 1n,
        sequence: 1,
      }),
    ).toBeNull();
    expect(startDecisionSpan("", { client: "c", requestId: 1n, sequence: 1 })).toBeNull();
    expect(parentContext("01-zz")).toBeNull();
  });
});
