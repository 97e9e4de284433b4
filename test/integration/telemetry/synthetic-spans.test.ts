/**
 * A synthetic answer is part of its request's trace: when a sampled request that a session
 * consumed is later answered by a SyntheticReply (an Echo Reply or an ICMP error from a
 * router's address), one `icmpfwd.synthetic_reply` span, child of its `icmpfwd.echo_request`
 * span, records what was sent, by whom and how long after the verdict; a refused answer ends in
 * error with the Rejection's message; an unsampled request records nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Action, SyntheticErrorType } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import type { SamplerSetting } from "../../../src/telemetry/settings.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { SpanRecorder } from "../../helpers/span-recorder.js";
import { type Harness, serviceTests } from "../service/harness.js";

const t = serviceTests();
const recorder = new SpanRecorder();
afterEach(() => recorder.reset());
const named = recorder.named.bind(recorder);

/** A request consumed by a session named "relay" on a service tracing as `setting` says. */
async function consumed(packet: Uint8Array, setting?: SamplerSetting) {
  const h: Harness = await t.start({ telemetry: recorder.tracing({ sampler: setting }) });
  const c = await t.connect({ clientName: "relay" });
  h.link.inject(packet);
  const [event] = await c.waitEvents(1);
  c.decide([event], Action.ACTION_CONSUME);
  await c.until(() => h.counter("service.outcomes.consume.verdict") === 1, "consumed");
  return { h, c, id: event.requestId };
}

describe("synthetic answers in the trace", () => {
  it("a synthetic Echo Reply is one synthetic_reply span, child of the request's span, with its session and delay", async () => {
    const { h, c, id } = await consumed(v4Echo({ sequence: 1 }));
    await new Promise((r) => setTimeout(r, 30));
    c.synthetic(id);
    await c.until(() => h.counter("service.synthetic.sent") === 1, "sent");
    const [req] = named("icmpfwd.echo_request");
    const spans = named("icmpfwd.synthetic_reply");
    expect(spans).toHaveLength(1);
    const [s] = spans;
    expect(s.spanContext().traceId).toBe(req.spanContext().traceId);
    expect(s.parentSpanContext?.spanId).toBe(req.spanContext().spanId);
    const { "icmpfwd.synthetic.delay_ms": delayMs, ...rest } = s.attributes;
    expect(rest).toEqual({
      "icmpfwd.session": c.welcome?.sessionId,
      "icmpfwd.client": "relay",
      "icmpfwd.synthetic.kind": "echo_reply",
    });
    expect(delayMs).toBeGreaterThanOrEqual(25);
    expect(s.status.code).toBe(0);
  });

  it("a synthetic ICMP error's span names its kind and the router's address", async () => {
    const { h, c, id } = await consumed(v6Echo({ sequence: 1 }));
    c.syntheticError(id, SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED, "fd00:5::1");
    await c.until(() => h.counter("service.synthetic.errors.timeExceeded") === 1, "sent");
    const [s] = named("icmpfwd.synthetic_reply");
    expect(s.attributes["icmpfwd.synthetic.kind"]).toBe("time_exceeded");
    expect(s.attributes["icmpfwd.synthetic.source"]).toBe("fd00:5::1");
    expect(s.status.code).toBe(0);
  });

  it("a refused answer's span ends in error with the Rejection's message, and the corrected one is traced too", async () => {
    const { h, c, id } = await consumed(v4Echo({ sequence: 1 }));
    c.syntheticError(id, SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE, "198.18.0.2");
    const [rejection] = await c.waitRejections(1);
    c.syntheticError(id, SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE, "198.18.5.1");
    await c.until(() => h.counter("service.synthetic.errors.netUnreachable") === 1, "sent");
    const spans = named("icmpfwd.synthetic_reply");
    expect(spans).toHaveLength(2);
    expect(spans[0].status).toEqual({ code: 2, message: rejection.message });
    expect(spans[0].attributes["icmpfwd.synthetic.source"]).toBe("198.18.0.2");
    expect(spans[1].status.code).toBe(0);
    expect(spans[1].attributes["icmpfwd.synthetic.source"]).toBe("198.18.5.1");
  });

  it("an unsampled request's synthetic answer records no span", async () => {
    const { h, c, id } = await consumed(v4Echo({ sequence: 1 }), {
      kind: "parentbased_always_off",
    });
    c.synthetic(id);
    await c.until(() => h.counter("service.synthetic.sent") === 1, "sent");
    expect(recorder.exporter.getFinishedSpans()).toHaveLength(0);
  });
});
