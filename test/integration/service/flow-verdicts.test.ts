/**
 * apply_to_flow_ms: one verdict decides the rest of its flow (source, destination, ident) for a
 * while, without asking; bounded table, expiry, cleared when the session ends.
 */
import { describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("flow verdicts", () => {
  it("decides the rest of the flow without asking, counted as cause flow", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ ident: 1, sequence: 1 }));
    const [first] = await c.waitEvents(1);
    c.decide([first], Action.ACTION_REPLY, 60_000);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    h.link.inject(...[2, 3, 4, 5].map((sequence) => v4Echo({ ident: 1, sequence })));
    expect(h.counter("service.outcomes.reply.flow")).toBe(4);
    expect(h.counter("service.outcomes.reply.verdict")).toBe(1);
    expect(h.takeReplies()).toHaveLength(5);
    // Another flow (other ident) is still asked.
    h.link.inject(v4Echo({ ident: 2, sequence: 1 }));
    await c.waitEvents(2);
    expect(c.events[1].ident).toBe(2);
  });

  it("expires after apply_to_flow_ms", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ ident: 1, sequence: 1 }));
    const [first] = await c.waitEvents(1);
    c.decide([first], Action.ACTION_CONSUME, 80);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    h.link.inject(v4Echo({ ident: 1, sequence: 2 }));
    expect(h.counter("service.outcomes.consume.flow")).toBe(1);
    await sleep(120);
    h.link.inject(v4Echo({ ident: 1, sequence: 3 }));
    await c.waitEvents(2);
    expect(c.events[1].sequence).toBe(3);
    expect(h.counter("service.outcomes.consume.flow")).toBe(1);
  });

  it("is cleared when the session that gave it ends", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo({ ident: 1, sequence: 1 }));
    const [first] = await c.waitEvents(1);
    c.decide([first], Action.ACTION_CONSUME, 60_000);
    await c.until(() => h.service.dispatcher.flowVerdicts === 1, "flow verdict stored");
    c.cancel();
    await c.until(() => h.counter("service.sessions.closed") === 1, "session closed");
    expect(h.service.dispatcher.flowVerdicts).toBe(0);
    h.link.inject(v4Echo({ ident: 1, sequence: 2 }));
    expect(h.counter("service.outcomes.consume.flow")).toBe(0);
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
  });

  it("keeps the table bounded: the oldest flow goes first, counted", async () => {
    h = await t.start({ dispatcher: { flowTableSize: 2 } });
    const c = await connect();
    h.link.inject(...[1, 2, 3].map((ident) => v4Echo({ ident })));
    const events = await c.waitEvents(3);
    for (const e of events) c.decide([e], Action.ACTION_CONSUME, 60_000);
    await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
    expect(h.service.dispatcher.flowVerdicts).toBe(2);
    expect(h.counter("service.flowEvictions")).toBe(1);
    // Flow 1 was evicted: asked again; flows 2 and 3 are not.
    h.link.inject(...[1, 2, 3].map((ident) => v4Echo({ ident, sequence: 9 })));
    await c.waitEvents(4);
    expect(c.events[3].ident).toBe(1);
    expect(h.counter("service.outcomes.consume.flow")).toBe(2);
  });
});
