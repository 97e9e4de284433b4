/**
 * Drain: a client's Drain (no new requests; in-flight ones still decided; then its stream ends
 * with OK) and the server's (Draining to every session, held requests decided or defaulted
 * within the drain timeout, then the server stops).
 */
import { describe, expect, it } from "vitest";
import { Action } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, outcomes, serviceTests, tick } from "./harness.js";

const t = serviceTests();
const { connect } = t;
let h: Harness;

describe("client Drain", () => {
  it("takes no new requests, still decides its in-flight ones, then the stream ends with OK", async () => {
    h = await t.start();
    const a = await connect();
    h.link.inject(v4Echo({ ident: 1, sequence: 1 }), v4Echo({ ident: 1, sequence: 2 }));
    const held = await a.waitEvents(2);
    a.drain();
    await a.until(() => h.service.dispatcher.sessions[0]?.draining, "draining");
    // New requests: not for a (on-no-client without another session), then for b.
    h.link.inject(v4Echo({ ident: 1, sequence: 3 }));
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
    const b = await connect();
    h.link.inject(v4Echo({ ident: 1, sequence: 4 }));
    await b.waitEvents(1);
    expect(a.events).toHaveLength(2);
    // a's in-flight verdicts still count.
    a.decide([held[0]], Action.ACTION_CONSUME);
    await a.until(() => h.counter("service.outcomes.consume.verdict") === 1, "first verdict");
    expect(a.status).toBeNull();
    a.decide([held[1]], Action.ACTION_REPLY);
    const status = await a.waitStatus();
    expect(status.code).toBe(0);
    expect(h.counter("service.outcomes.reply.verdict")).toBe(1);
    expect(h.counter("service.sessions.closed")).toBe(1);
  });

  it("ends at once when nothing is in flight", async () => {
    h = await t.start();
    const a = await connect();
    a.drain();
    expect((await a.waitStatus()).code).toBe(0);
  });
});

describe("server drain", () => {
  it("sends Draining, sends no new requests, waits for the held ones to be decided, then stops", async () => {
    h = await t.start();
    const a = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    const held = await a.waitEvents(2);
    const drained = h.service.drain(5000);
    await a.until(() => a.drainingSeen, "Draining");
    const grace = a.messages.find((m) => m.message?.$case === "draining");
    expect(grace?.message?.$case === "draining" && grace.message.value.grace?.seconds).toBe(5n);
    h.link.inject(v4Echo({ sequence: 3 }));
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
    a.decide(held, Action.ACTION_CONSUME);
    expect(await drained).toBe(true);
    expect((await a.waitStatus()).code).toBe(0);
    expect(h.counter("service.outcomes.consume.verdict")).toBe(2);
    expect(outcomes(h, null, null)).toBe(3);
    // A new client is refused.
    const late = t.raw();
    late.hello();
    expect((await late.waitStatus()).code).not.toBe(0);
  });

  it("gives what is still held at the drain timeout on-disconnect, and ends the streams UNAVAILABLE", async () => {
    h = await t.start({ policy: { onDisconnect: "consume" } });
    const a = await connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    await a.waitEvents(2);
    const started = Date.now();
    expect(await h.service.drain(150)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(h.counter("service.outcomes.consume.disconnect")).toBe(2);
    expect((await a.waitStatus()).code).toBe(14);
    await tick();
    expect(h.takeReplies()).toHaveLength(0);
    expect(h.service.dispatcher.pendingCount).toBe(0);
  });

  it("lets the deadline run as usual while draining (on-timeout before the drain timeout)", async () => {
    h = await t.start({ deadlineMs: 50 });
    const a = await connect();
    h.link.inject(v4Echo());
    await a.waitEvents(1);
    expect(await h.service.drain(2000)).toBe(true);
    expect(h.counter("service.outcomes.fallthrough.timeout")).toBe(1);
  });
});
