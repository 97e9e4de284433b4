/**
 * Choosing a session (DESIGN.md §4): flow affinity while the session lives, least in-flight
 * otherwise; a session at its limit or whose stream is not writable gets nothing more.
 */
import { describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { payloadOf, v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests, type TestClient, tick } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;

describe("choosing a session", () => {
  it("keeps a flow (source, destination, ident) on the same session while it lives", async () => {
    h = await t.start();
    const a = await connect();
    const b = await connect();
    // Two flows, interleaved, 10 requests each, each decided at once.
    for (let i = 0; i < 10; i++) {
      h.link.inject(v4Echo({ ident: 1, sequence: i }), v4Echo({ ident: 2, sequence: i }));
      await tick();
    }
    await a.until(() => a.events.length + b.events.length === 20, "20 events");
    const identsOf = (c: TestClient) => new Set(c.events.map((e) => e.ident));
    expect(identsOf(a).size).toBe(1);
    expect(identsOf(b).size).toBe(1);
    expect(identsOf(a)).not.toEqual(identsOf(b));
    expect(a.events).toHaveLength(10);
    a.decide(a.events, Action.ACTION_CONSUME);
    b.decide(b.events, Action.ACTION_CONSUME);
    await a.until(() => h.service.dispatcher.pendingCount === 0, "decided");
  });

  it("spreads new flows by least in-flight", async () => {
    h = await t.start();
    const a = await connect();
    const b = await connect();
    const c = await connect();
    // 30 flows, none answered: each new flow goes to the session holding the fewest.
    h.link.inject(...Array.from({ length: 30 }, (_, i) => v4Echo({ ident: 100 + i })));
    await a.until(() => a.events.length + b.events.length + c.events.length === 30, "30 events");
    expect([a.events.length, b.events.length, c.events.length]).toEqual([10, 10, 10]);
    // b answers its share; the next flows go to b (0 in flight) until it is level again.
    b.decide(b.events, Action.ACTION_CONSUME);
    await b.until(() => h.service.dispatcher.pendingCount === 20, "b's decided");
    h.link.inject(...Array.from({ length: 10 }, (_, i) => v4Echo({ ident: 200 + i })));
    await b.waitEvents(20);
    await tick();
    expect([a.events.length, b.events.length, c.events.length]).toEqual([10, 20, 10]);
  });

  it("sends a session no more than its max_in_flight; the rest go to another session", async () => {
    h = await t.start();
    const a = await connect({ maxInFlight: 3 });
    const b = await connect({ maxInFlight: 100 });
    h.link.inject(...Array.from({ length: 10 }, (_, i) => v4Echo({ ident: 1, sequence: i })));
    await b.until(() => a.events.length + b.events.length === 10, "10 events");
    expect(a.events.length).toBeLessThanOrEqual(3);
    expect(h.counter("service.outcomes.fallthrough.overload")).toBe(0);
  });

  it("caps max_in_flight and defaults it when the Hello asks for 0", async () => {
    h = await t.start({ limits: { defaultMaxInFlight: 7, maxInFlightCap: 50 } });
    const a = await connect({ maxInFlight: 0 });
    const b = await connect({ maxInFlight: 1_000_000 });
    expect(a.welcome?.maxInFlight).toBe(7);
    expect(b.welcome?.maxInFlight).toBe(50);
    expect(a.welcome?.maxBatch).toBe(128);
  });

  it("gives a session whose stream is not writable nothing more, until it drains", async () => {
    h = await t.start({ limits: { maxBatch: 1 } });
    const slow = await connect({ maxInFlight: 60_000, payloadBytes: 1400 });
    // The slow client stops reading: HTTP/2 flow control fills, then write() returns false.
    slow.call.pause();
    const payload = payloadOf(1400);
    let n = 0;
    const slot = () => h.service.dispatcher.sessions[0];
    while (slot().writable && n < 5000) {
      h.link.inject(v4Echo({ ident: 1, sequence: n++, payload }));
      await tick();
    }
    expect(slot().writable).toBe(false);
    const held = slot().inFlight;
    expect(held).toBe(n);
    // Nothing more for it: with no other session, new requests get on-overload.
    h.link.inject(v4Echo({ ident: 2, payload }), v4Echo({ ident: 3, payload }));
    expect(h.counter("service.outcomes.fallthrough.overload")).toBe(2);
    expect(slot().inFlight).toBe(held);
    // Another session takes new requests meanwhile.
    const other = await connect();
    h.link.inject(v4Echo({ ident: 4, payload }));
    await other.waitEvents(1);
    // The slow client reads again: 'drain' makes it writable, and it gets every event it held.
    slow.call.resume();
    await slow.waitEvents(held, 10_000);
    await slow.until(() => slot().writable, "writable again");
    slow.decide(slow.events, Action.ACTION_CONSUME);
    other.decide(other.events, Action.ACTION_CONSUME);
    await slow.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    expect(h.counter("service.outcomes.consume.verdict")).toBe(held + 1);
  });
});
