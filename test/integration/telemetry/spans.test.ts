/**
 * DESIGN.md §5's spans, from the service on a real loopback socket into an in-memory exporter:
 * one `icmpfwd.echo_request` per Echo Request, a child `icmpfwd.decide` while a session decides
 * it, names and attributes for every outcome cause, and the traceparent a client continues.
 */
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { OtelRequestTelemetry } from "../../../src/telemetry/request-spans.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { SpanRecorder } from "../../helpers/span-recorder.js";
import { serviceTests, tick } from "../service/harness.js";

const t = serviceTests();
const recorder = new SpanRecorder();
afterEach(() => recorder.reset());
const tracing = recorder.tracing.bind(recorder);
const named = recorder.named.bind(recorder);

/** Waits until `n` echo_request spans have ended. */
async function requestSpans(n: number): Promise<ReadableSpan[]> {
  for (let i = 0; i < 200 && named("icmpfwd.echo_request").length < n; i++)
    await new Promise((r) => setTimeout(r, 10));
  const spans = named("icmpfwd.echo_request");
  expect(spans).toHaveLength(n);
  return spans;
}

describe("request spans (DESIGN.md §5)", () => {
  it("a decided request is one echo_request span with one decide child, attributed as DESIGN.md §5 names", async () => {
    const h = await t.start({ telemetry: tracing() });
    const c = await t.connect({ clientName: "policy-a" });
    h.link.inject(v4Echo({ ident: 0x1234, sequence: 7 }));
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_REPLY);
    const [req] = await requestSpans(1);
    const decide = named("icmpfwd.decide");
    expect(decide).toHaveLength(1);
    expect(decide[0].spanContext().traceId).toBe(req.spanContext().traceId);
    expect(decide[0].parentSpanContext?.spanId).toBe(req.spanContext().spanId);
    expect(req.parentSpanContext).toBeUndefined();
    const session = c.welcome?.sessionId;
    expect(req.attributes).toEqual({
      "network.type": "ipv4",
      "source.address": "198.18.0.1",
      "destination.address": "198.18.0.2",
      "icmp.ident": 0x1234,
      "icmp.sequence": 7,
      "icmpfwd.temporary": false,
      "icmpfwd.verdict": "reply",
      "icmpfwd.cause": "verdict",
      "icmpfwd.session": session,
    });
    expect(decide[0].attributes).toEqual({
      "icmpfwd.session": session,
      "icmpfwd.client": "policy-a",
      "icmpfwd.verdict": "reply",
      "icmpfwd.cause": "verdict",
    });
  });

  it("the event's traceparent names the decide span, with the sampled flag", async () => {
    const h = await t.start({ telemetry: tracing() });
    const c = await t.connect();
    h.link.inject(v6Echo({ sequence: 1 }));
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_CONSUME);
    const [req] = await requestSpans(1);
    const [decide] = named("icmpfwd.decide");
    expect(e.traceparent).toBe(`00-${req.spanContext().traceId}-${decide.spanContext().spanId}-01`);
    expect(req.attributes["network.type"]).toBe("ipv6");
    expect(req.attributes["source.address"]).toBe("fd00:1::1");
    expect(req.attributes["icmpfwd.verdict"]).toBe("consume");
  });

  it("no client: one echo_request span, no decide span, cause no_client", async () => {
    const h = await t.start({ telemetry: tracing() });
    h.link.inject(v4Echo({ sequence: 1 }));
    const [req] = await requestSpans(1);
    expect(named("icmpfwd.decide")).toHaveLength(0);
    expect(req.attributes["icmpfwd.cause"]).toBe("no_client");
    expect(req.attributes["icmpfwd.verdict"]).toBe("fallthrough");
    expect(req.attributes["icmpfwd.session"]).toBeUndefined();
  });

  it("a flow verdict: the later request of the flow is one span with cause flow", async () => {
    const h = await t.start({ telemetry: tracing() });
    const c = await t.connect();
    h.link.inject(v4Echo({ ident: 9, sequence: 1 }));
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_CONSUME, 60_000);
    await requestSpans(1);
    h.link.inject(v4Echo({ ident: 9, sequence: 2 }));
    const spans = await requestSpans(2);
    expect(spans[1].attributes["icmpfwd.cause"]).toBe("flow");
    expect(spans[1].attributes["icmpfwd.verdict"]).toBe("consume");
    expect(named("icmpfwd.decide")).toHaveLength(1);
  });

  it("overload: a request no session can take now ends at once with cause overload", async () => {
    const h = await t.start({ telemetry: tracing() });
    const c = await t.connect({ maxInFlight: 1 });
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    const spans = await requestSpans(1);
    expect(spans[0].attributes["icmp.sequence"]).toBe(2);
    expect(spans[0].attributes["icmpfwd.cause"]).toBe("overload");
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_REPLY);
    await requestSpans(2);
  });

  it("timeout: the decide span ends in error and the request's cause is timeout", async () => {
    const h = await t.start({ deadlineMs: 30, telemetry: tracing() });
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    await c.waitEvents(1);
    const [req] = await requestSpans(1);
    const [decide] = named("icmpfwd.decide");
    expect(req.attributes["icmpfwd.cause"]).toBe("timeout");
    expect(decide.attributes["icmpfwd.cause"]).toBe("timeout");
    expect(decide.status).toEqual({ code: 2, message: "no verdict: timeout" });
  });

  it("disconnect: a request whose session ended has cause disconnect", async () => {
    const h = await t.start({ telemetry: tracing() });
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    await c.waitEvents(1);
    c.close();
    const [req] = await requestSpans(1);
    expect(req.attributes["icmpfwd.cause"]).toBe("disconnect");
    expect(named("icmpfwd.decide")[0].attributes["icmpfwd.cause"]).toBe("disconnect");
  });

  it("the decide span links to its session's Connect stream span", async () => {
    const h = await t.start({ telemetry: tracing(), calls: recorder.calls() });
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_REPLY);
    await requestSpans(1);
    // The Connect span ends with its stream.
    c.close();
    await c.until(
      () => named("grpc.icmpfwd.v1.EchoForwarder/Connect").length === 1,
      "Connect span",
    );
    const [connect] = named("grpc.icmpfwd.v1.EchoForwarder/Connect");
    const [decide] = named("icmpfwd.decide");
    expect(decide.links.map((l) => l.context)).toEqual([connect.spanContext()]);
    expect(decide.spanContext().traceId).not.toBe(connect.spanContext().traceId);
  });

  it("an unsampled request records no span and its traceparent says not sampled", async () => {
    const h = await t.start({ telemetry: tracing({ sampler: { kind: "always_off" } }) });
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    const [e] = await c.waitEvents(1);
    expect(e.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    c.decide([e], Action.ACTION_REPLY);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    await tick();
    expect(recorder.exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("sampled first: an unsampled request starts no span, yet its event carries a traceparent with flags 00", async () => {
    const tel = tracing({ sampler: { kind: "parentbased_always_off" } });
    const h = await t.start({ telemetry: tel });
    const c = await t.connect();
    for (let i = 0; i < 8; i++) h.link.inject(v4Echo({ sequence: i }));
    const events = await c.waitEvents(8);
    const ids = new Set<string>();
    for (const e of events) {
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/.exec(e.traceparent);
      expect(m, e.traceparent).not.toBeNull();
      expect(m?.[1]).not.toBe("0".repeat(32));
      expect(m?.[2]).not.toBe("0".repeat(16));
      ids.add(m?.[1] ?? "");
    }
    expect(ids.size).toBe(8);
    c.decide(events, Action.ACTION_REPLY);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    await tick();
    expect(tel.startSpan.calls).toBe(0);
    expect(recorder.started).toBe(0);
    expect(recorder.exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("at a ratio, exactly the requests whose traceparent says sampled have spans, on the same trace ids", async () => {
    const tel = tracing({ sampler: { kind: "parentbased_traceidratio", ratio: 0.5 } });
    const h = await t.start({ telemetry: tel });
    const c = await t.connect();
    const n = 64;
    for (let i = 0; i < n; i++) h.link.inject(v4Echo({ sequence: i }));
    const events = await c.waitEvents(n);
    c.decide(events, Action.ACTION_REPLY);
    const sampled = events.filter((e) => e.traceparent.endsWith("-01"));
    const unsampled = events.filter((e) => e.traceparent.endsWith("-00"));
    expect(sampled.length + unsampled.length).toBe(n);
    // 64 fair coin flips: all one way has probability 2⁻⁶³.
    expect(sampled.length).toBeGreaterThan(0);
    expect(unsampled.length).toBeGreaterThan(0);
    const spans = await requestSpans(sampled.length);
    const traceIdOf = (tp: string) => tp.slice(3, 35);
    expect(new Set(spans.map((s) => s.spanContext().traceId))).toEqual(
      new Set(sampled.map((e) => traceIdOf(e.traceparent))),
    );
    // One echo_request and one decide span per sampled request, none for the others.
    expect(tel.startSpan.calls).toBe(2 * sampled.length);
    expect(recorder.started).toBe(2 * sampled.length);
  });

  it("tracing off: events carry no traceparent", async () => {
    const h = await t.start({ telemetry: new OtelRequestTelemetry(null, null) });
    const c = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    const [e] = await c.waitEvents(1);
    expect(e.traceparent).toBe("");
  });
});
