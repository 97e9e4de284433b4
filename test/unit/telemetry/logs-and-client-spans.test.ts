/** Trace ids in the service's audit lines, tracing's set-up, and the TypeScript client's decision span. */
import { Writable } from "node:stream";
import { context, createContextKey, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { resourceFromAttributes } from "@opentelemetry/resources";
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
import { pinoAudit } from "../../../src/daemon/audit.js";
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

  it("an audit line of a sampled call carries its trace_id and span_id", () => {
    const { stream, out } = lines();
    const audit = pinoAudit(createLogger("info", { destination: stream }));
    const trace = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331" };
    audit.adminChange({ identity: "uid:0", peer: "unix", trace }, "route", null, "198.18.0.0/15");
    expect(out[0]).toMatchObject({
      msg: "admin change",
      identity: "uid:0",
      trace_id: trace.traceId,
      span_id: trace.spanId,
    });
    expect(out[0].trace).toBeUndefined();
  });

  it("an audit line of an untraced call carries no trace ids", () => {
    const { stream, out } = lines();
    const audit = pinoAudit(createLogger("info", { destination: stream }));
    audit.adminChange({ identity: "uid:0", peer: "unix" }, "route", null, "198.18.0.0/15");
    expect(out[0].msg).toBe("admin change");
    expect(out[0].trace_id).toBeUndefined();
  });

  it("tracing as the daemon sets it up installs no global context manager", async () => {
    context.disable();
    const { startTracingTo } = await import("../../../src/telemetry/tracing.js");
    const traced = startTracingTo(
      [],
      {
        sampler: { kind: "parentbased_always_on" },
        batchSpans: { scheduleDelayMs: 1000, maxQueueSize: 16, maxExportBatchSize: 16 },
      },
      resourceFromAttributes({}),
      "test",
    );
    // The API's no-op manager: a context made active is not seen inside (AsyncLocalStorage's
    // promise hooks cost a fifth of the decision rate).
    const key = createContextKey("probe");
    expect(
      context.with(ROOT_CONTEXT.setValue(key, 1), () => context.active().getValue(key)),
    ).toBeUndefined();
    await traced.provider.shutdown();
    context.setGlobalContextManager(contextManager.enable());
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
