/**
 * Every outcome cause, counted once, with what reaches the wire: reply and fallthrough send one
 * Echo Reply, consume sends none.
 */
import { describe, expect, it } from "vitest";
import { CounterRegistry } from "../../../src/daemon/counters.js";
import { Action, Family } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { ICMPV4_ECHO_REPLY } from "../../../src/netstack/header/icmpv4.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { type Harness, outcomes, serviceTests, tick } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;

describe("outcomes by cause", () => {
  it("carries out each verdict: REPLY answers, CONSUME drops, FALLTHROUGH lets the stack answer", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }), v4Echo({ sequence: 3 }));
    const [a, b, d] = await c.waitEvents(3);
    c.verdicts([
      { requestId: a.requestId, action: Action.ACTION_REPLY },
      { requestId: b.requestId, action: Action.ACTION_CONSUME },
      { requestId: d.requestId, action: Action.ACTION_FALLTHROUGH },
    ]);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "all decided");
    await tick();
    const replies = h.takeReplies();
    expect(replies.map((p) => p[20 + 7])).toEqual([1, 3]); // ICMP sequence low byte
    expect(h.counter("service.outcomes.reply.verdict")).toBe(1);
    expect(h.counter("service.outcomes.consume.verdict")).toBe(1);
    expect(h.counter("service.outcomes.fallthrough.verdict")).toBe(1);
    expect(outcomes(h, null, null)).toBe(3);
    expect(h.counter("service.requests")).toBe(3);
  });

  it("describes each request: family, addresses, ident, sequence, TTL, TOS, payload prefix and length, deadline and budget", async () => {
    h = await t.start({ deadlineMs: 250 });
    const c = await connect({ payloadBytes: 4 });
    const payload = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    h.link.inject(v4Echo({ ident: 0x1234, sequence: 77, ttl: 9, tos: 0x28, payload }));
    h.link.inject(v6Echo({ ident: 7, sequence: 5, hopLimit: 3, trafficClass: 0x20 }));
    const [e4, e6] = await c.waitEvents(2);
    expect(e4.family).toBe(Family.FAMILY_IPV4);
    expect([...e4.source]).toEqual([198, 18, 0, 1]);
    expect([...e4.destination]).toEqual([198, 18, 0, 2]);
    expect([e4.ident, e4.sequence, e4.ttl, e4.tos, e4.nic]).toEqual([0x1234, 77, 9, 0x28, 1]);
    expect([...e4.payload]).toEqual([9, 8, 7, 6]);
    expect(e4.payloadLength).toBe(9);
    expect(e4.localAddressTemporary).toBe(false);
    const ms = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1000 + t.nanos / 1e6;
    const received = e4.receivedAt ? ms(e4.receivedAt) : 0;
    expect(Math.abs(received - Date.now())).toBeLessThan(2000);
    expect(e4.deadline ? ms(e4.deadline) - received : 0).toBeCloseTo(250, 0);
    const budget = e4.budget ? ms(e4.budget) : 0;
    expect(budget).toBeGreaterThan(200);
    expect(budget).toBeLessThanOrEqual(250);
    expect(e6.family).toBe(Family.FAMILY_IPV6);
    expect(e6.source).toHaveLength(16);
    expect([e6.ident, e6.sequence, e6.ttl, e6.tos]).toEqual([7, 5, 3, 0x20]);
    c.decide([e4, e6], Action.ACTION_CONSUME);
  });

  it("applies on-timeout when no verdict comes before the deadline", async () => {
    h = await t.start({ deadlineMs: 40 });
    const c = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    await c.waitEvents(2);
    await c.until(() => h.counter("service.outcomes.fallthrough.timeout") === 2, "2 timeouts");
    await tick();
    expect(h.takeReplies()).toHaveLength(2);
    expect(outcomes(h, null, null)).toBe(2);
  });

  it("applies on-no-client at once when no decide session is connected", async () => {
    h = await t.start();
    h.link.inject(v4Echo(), v6Echo());
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(2);
    expect(h.takeReplies()).toHaveLength(2);
    expect(h.service.dispatcher.pendingCount).toBe(0);
  });

  it("applies on-no-client when no connected session's filter matches", async () => {
    h = await t.start();
    const c = await connect({
      filter: {
        family: Family.FAMILY_IPV6,
        sourcePrefixes: [],
        destinationPrefixes: [],
        temporaryOnly: false,
      },
    });
    h.link.inject(v4Echo());
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
    h.link.inject(v6Echo());
    await c.waitEvents(1);
    expect(c.events[0].family).toBe(Family.FAMILY_IPV6);
  });

  it("applies on-overload when every matching session is at its in-flight limit", async () => {
    h = await t.start();
    const c = await connect({ maxInFlight: 2 });
    expect(c.welcome?.maxInFlight).toBe(2);
    h.link.inject(...[1, 2, 3, 4, 5].map((sequence) => v4Echo({ sequence })));
    expect(h.counter("service.outcomes.fallthrough.overload")).toBe(3);
    const events = await c.waitEvents(2);
    await tick();
    expect(c.events).toHaveLength(2);
    c.decide(events, Action.ACTION_CONSUME);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    // Room again: the next request is sent.
    h.link.inject(v4Echo({ sequence: 6 }));
    await c.waitEvents(3);
    expect(c.events[2].sequence).toBe(6);
  });

  it("applies on-disconnect to in-flight requests when their session ends and no other can take them", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    await c.waitEvents(2);
    c.cancel();
    await c.until(() => h.counter("service.outcomes.fallthrough.disconnect") === 2, "disconnect");
    expect(h.counter("service.sessions.closed")).toBe(1);
    expect(outcomes(h, null, null)).toBe(2);
  });

  it("counts a forwarder overflow as its own cause, with on-overload", async () => {
    h = await t.start({ forwarderMaxHeld: 2 });
    const c = await connect();
    h.link.inject(...[1, 2, 3, 4, 5].map((sequence) => v4Echo({ sequence })));
    await c.waitEvents(2);
    expect(h.counter("service.outcomes.fallthrough.forwarderOverflow")).toBe(3);
    expect(h.counter("service.requests")).toBe(2);
    expect(h.takeReplies()).toHaveLength(3);
  });

  it("does not dispatch other ICMP messages: answered false at once and counted apart", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ type: ICMPV4_ECHO_REPLY }), v6Echo({ type: 129 }));
    await tick();
    expect(h.counter("service.nonEcho")).toBe(2);
    expect(h.counter("service.requests")).toBe(0);
    expect(c.events).toHaveLength(0);
    expect(outcomes(h, null, null)).toBe(0);
  });

  it("with --temporary-reply, a fallthrough for an IPv4 temporary address answers from that address; consume does not", async () => {
    h = await t.start({ temporaryReply: true });
    h.stack.setPromiscuousMode(1, true);
    // No client: on-no-client (fallthrough) keeps the temporary-address rule.
    h.link.inject(v4Echo({ dst: "198.18.0.77" }));
    const [r] = h.takeReplies();
    expect([...r.subarray(12, 16)]).toEqual([198, 18, 0, 77]);
    const c = await connect();
    h.link.inject(
      v4Echo({ dst: "198.18.0.78", sequence: 2 }),
      v4Echo({ dst: "198.18.0.79", sequence: 3 }),
    );
    const [a, b] = await c.waitEvents(2);
    expect(a.localAddressTemporary).toBe(true);
    c.verdicts([
      { requestId: a.requestId, action: Action.ACTION_FALLTHROUGH },
      { requestId: b.requestId, action: Action.ACTION_CONSUME },
    ]);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    await tick();
    const replies = h.takeReplies();
    expect(replies).toHaveLength(1);
    expect([...replies[0].subarray(12, 16)]).toEqual([198, 18, 0, 78]);
  });

  it("without --temporary-reply, a fallthrough for an IPv4 temporary address stays unanswered (the netstack's rule)", async () => {
    h = await t.start();
    h.stack.setPromiscuousMode(1, true);
    h.link.inject(v4Echo({ dst: "198.18.0.77" }));
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
    expect(h.takeReplies()).toHaveLength(0);
    // Positive control: the NIC's own address is answered.
    h.link.inject(v4Echo());
    expect(h.takeReplies()).toHaveLength(1);
  });
});

describe("GetStats", () => {
  it("GetStats returns every counter and gauge of the registry it is given", async () => {
    const registry = new CounterRegistry();
    h = await t.start({ stats: () => registry.snapshot() });
    const service = h.service;
    registry.addCounters(() => ({ "netstack.example": 5 }));
    registry.addCounters(() => service.counters());
    registry.addGauges(() => service.gauges());
    h.link.inject(v4Echo());
    const { EchoForwarderClient } = await import("../../../src/gen/icmpfwd/v1/forwarder.js");
    const { credentials } = await import("@grpc/grpc-js");
    const client = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    try {
      const r = await new Promise<
        import("../../../src/gen/icmpfwd/v1/forwarder.js").GetStatsResponse
      >((resolve, reject) => client.getStats({}, (e, v) => (e ? reject(e) : resolve(v))));
      expect(r.counters["service.outcomes.fallthrough.noClient"]).toBe(1n);
      expect(r.counters["netstack.example"]).toBe(5n);
      expect(r.gauges["service.sessions"]).toBe(0n);
    } finally {
      client.close();
    }
  });
});
