/**
 * Proxy-owned replies (DESIGN.md §4): after CONSUME, one SyntheticReply within the window sends
 * an Echo Reply through route lookup from the original destination (optionally with the
 * client's payload); too late, twice, foreign, not consumed, no route or rate limited → a
 * Rejection with the reason.
 */
import { describe, expect, it } from "vitest";
import { Action, RejectionReason } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { IPV4_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { ICMPV4_ECHO_REPLY } from "../../../src/netstack/header/icmpv4.js";
import { sleep } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();
let h: Harness;

async function consumed(n = 1, o: Parameters<typeof t.start>[0] = {}) {
  h = await t.start(o);
  const c = await t.connect();
  for (let i = 1; i <= n; i++)
    h.link.inject(v4Echo({ sequence: i, payload: Uint8Array.of(1, 2, 3) }));
  const events = await c.waitEvents(n);
  c.decide(events, Action.ACTION_CONSUME);
  await c.until(() => h.counter("service.outcomes.consume.verdict") === n, "consumed");
  expect(h.takeReplies()).toHaveLength(0);
  return { c, events };
}

describe("synthetic replies", () => {
  it("inside the window: one Echo Reply from the original destination with the request's payload", async () => {
    const { c, events } = await consumed();
    c.synthetic(events[0].requestId);
    await c.until(() => h.counter("service.synthetic.sent") === 1, "sent");
    const [reply] = h.takeReplies();
    const ihl = (reply[0] & 0x0f) * 4;
    expect(reply[ihl]).toBe(ICMPV4_ECHO_REPLY);
    expect([...reply.subarray(12, 16)]).toEqual([198, 18, 0, 2]);
    expect([...reply.subarray(16, 20)]).toEqual([198, 18, 0, 1]);
    expect([...reply.subarray(ihl + 8)]).toEqual([1, 2, 3]);
    expect(c.rejections).toHaveLength(0);
  });

  it("carries the client's payload when given", async () => {
    const { c, events } = await consumed();
    c.synthetic(events[0].requestId, Uint8Array.of(9, 9, 9, 9, 9));
    await c.until(() => h.counter("service.synthetic.sent") === 1, "sent");
    const [reply] = h.takeReplies();
    expect([...reply.subarray(28)]).toEqual([9, 9, 9, 9, 9]);
  });

  it("outside the window: rejected as not allowed (too late), nothing sent", async () => {
    const { c, events } = await consumed(1, { syntheticWindowMs: 50 });
    await sleep(80);
    c.synthetic(events[0].requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED);
    expect(r.message).toMatch(/too late.*50 ms/);
    expect(h.takeReplies()).toHaveLength(0);
    expect(h.counter("service.synthetic.sent")).toBe(0);
  });

  it("twice: the second is rejected, one reply goes out", async () => {
    const { c, events } = await consumed();
    c.synthetic(events[0].requestId);
    c.synthetic(events[0].requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED);
    expect(r.message).toMatch(/already sent/);
    expect(h.takeReplies()).toHaveLength(1);
    expect(h.counter("service.synthetic.sent")).toBe(1);
  });

  it("foreign: another session's request is rejected as foreign", async () => {
    const { events } = await consumed();
    const other = await t.connect();
    other.synthetic(events[0].requestId);
    const [r] = await other.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_FOREIGN_REQUEST);
    expect(h.takeReplies()).toHaveLength(0);
  });

  it("after fallthrough: rejected as not consumed", async () => {
    h = await t.start();
    const c = await t.connect();
    h.link.inject(v4Echo());
    const [e] = await c.waitEvents(1);
    c.decide([e], Action.ACTION_FALLTHROUGH);
    await c.until(() => h.takeReplies().length === 1, "the fallthrough's reply");
    c.synthetic(e.requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED);
    expect(r.message).toMatch(/not consumed by a verdict: its outcome was fallthrough \(verdict\)/);
    expect(h.takeReplies()).toHaveLength(0);
  });

  it("before any verdict: rejected as not consumed yet", async () => {
    h = await t.start();
    const c = await t.connect();
    h.link.inject(v4Echo());
    const [e] = await c.waitEvents(1);
    c.synthetic(e.requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED);
    expect(r.message).toMatch(/not consumed yet/);
  });

  it("no route back: rejected with NO_ROUTE", async () => {
    const { c, events } = await consumed(1, { stack: { routes: false } });
    c.synthetic(events[0].requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_NO_ROUTE);
    expect(h.counter("service.rejections.noRoute")).toBe(1);
    expect(h.stack.stats.icmp.v4.packetsSent.noRoute).toBe(1);
  });

  it("rate limited: rejected with RATE_LIMITED", async () => {
    const { c, events } = await consumed(2);
    // Echo Replies are not a rate-limited type by default (as in Linux); make them one.
    h.stack.setICMPRateLimitedTypes(IPV4_PROTOCOL_NUMBER, [ICMPV4_ECHO_REPLY]);
    h.stack.setICMPLimit(0.001, 1);
    c.synthetic(events[0].requestId);
    c.synthetic(events[1].requestId);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_RATE_LIMITED);
    expect(h.counter("service.synthetic.sent")).toBe(1);
  });

  it("the copies kept for the window are bounded: the oldest is evicted and counted", async () => {
    const { c, events } = await consumed(3, {
      dispatcher: { synthetic: { maxRecords: 2 } },
    });
    expect(h.counter("service.synthetic.evicted")).toBe(1);
    expect(h.service.gauges()["service.synthetic.held"]).toBe(2);
    c.synthetic(events[0].requestId);
    const [r] = await c.waitRejections(1);
    expect(r.message).toMatch(/evicted/);
  });
});
