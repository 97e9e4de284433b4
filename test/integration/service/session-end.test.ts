/**
 * When a session ends, its in-flight requests move to another matching session if their budget
 * allows, otherwise on-disconnect applies; its flow verdicts and affinity go with it.
 */
import { describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, outcomes, serviceTests, tick } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;

describe("session end", () => {
  it("re-dispatches a cancelled session's in-flight requests to another session, same ids", async () => {
    h = await t.start();
    const a = await connect();
    h.link.inject(...[1, 2, 3].map((sequence) => v4Echo({ ident: 5, sequence })));
    await a.waitEvents(3);
    const b = await connect();
    a.cancel();
    await b.waitEvents(3);
    expect(b.events.map((e) => e.requestId)).toEqual(a.events.map((e) => e.requestId));
    expect(h.counter("service.redispatched")).toBe(3);
    b.decide(b.events, Action.ACTION_REPLY);
    await b.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    await tick();
    expect(h.counter("service.outcomes.reply.verdict")).toBe(3);
    expect(h.counter("service.outcomes.fallthrough.disconnect")).toBe(0);
    expect(h.takeReplies()).toHaveLength(3);
    // The flow is pinned to b now.
    h.link.inject(v4Echo({ ident: 5, sequence: 4 }));
    await b.waitEvents(4);
  });

  it("re-dispatches when the client half-closes its stream, and ends the call with OK", async () => {
    h = await t.start();
    const a = await connect();
    h.link.inject(v4Echo({ sequence: 1 }));
    await a.waitEvents(1);
    const b = await connect();
    a.end();
    expect((await a.waitStatus()).code).toBe(0);
    await b.waitEvents(1);
    expect(h.counter("service.redispatched")).toBe(1);
  });

  it("applies on-disconnect instead when the budget left is too small to re-dispatch", async () => {
    h = await t.start({ dispatcher: { minRedispatchBudgetMs: 60_000 } });
    const a = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    await a.waitEvents(2);
    const b = await connect();
    a.cancel();
    await b.until(() => h.counter("service.outcomes.fallthrough.disconnect") === 2, "disconnect");
    await tick();
    expect(b.events).toHaveLength(0);
    expect(h.counter("service.redispatched")).toBe(0);
  });

  it("applies on-disconnect to what the other sessions have no room for", async () => {
    h = await t.start();
    const a = await connect();
    const b = await connect({ maxInFlight: 1 });
    // One flow: pinned to a, which takes all four.
    h.link.inject(...[1, 2, 3, 4].map((i) => v4Echo({ ident: 9, sequence: i })));
    await a.waitEvents(4);
    expect(b.events).toHaveLength(0);
    a.cancel();
    // b has room for one; the other three get on-disconnect.
    await b.waitEvents(1);
    await b.until(
      () => h.counter("service.outcomes.fallthrough.disconnect") === 3,
      "3 disconnects",
    );
    expect(h.counter("service.redispatched")).toBe(1);
    expect(h.service.dispatcher.pendingCount).toBe(1);
    expect(outcomes(h, null, null)).toBe(3);
  });
});
