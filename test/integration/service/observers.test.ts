/**
 * OBSERVE sessions (DESIGN.md §4): copies of every matching request, never a decision to make,
 * never a delay for a decider; a bounded queue per session whose drops are counted and
 * reported to the session (EchoRequestBatch.observer_drops).
 */
import { describe, expect, it } from "vitest";
import { Action, Mode, RejectionReason } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests, tick } from "./harness.js";

const t = serviceTests();
let h: Harness;
const observe = { mode: Mode.MODE_OBSERVE, clientName: "watcher" };

describe("observe sessions", () => {
  it("an observer gets a copy of every matching request, with the decider's request id", async () => {
    h = await t.start();
    const o = await t.connect(observe);
    const d = await t.connect();
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    const events = await d.waitEvents(2);
    const copies = await o.waitEvents(2);
    expect(copies.map((e) => [e.requestId, e.sequence])).toEqual(
      events.map((e) => [e.requestId, e.sequence]),
    );
    d.decide(events, Action.ACTION_REPLY);
    await d.until(() => h.counter("service.outcomes.reply.verdict") === 2, "2 verdicts");
    expect(h.counter("service.observers.copies")).toBe(2);
    expect(h.counter("service.observers.drops")).toBe(0);
  });

  it("an observer alone decides nothing: requests get on-no-client, copies carry request id 0", async () => {
    h = await t.start();
    const o = await t.connect(observe);
    h.link.inject(v4Echo({ sequence: 7 }));
    const [copy] = await o.waitEvents(1);
    expect([copy.requestId, copy.sequence]).toEqual([0n, 7]);
    expect(h.counter("service.outcomes.fallthrough.noClient")).toBe(1);
    expect(h.takeReplies()).toHaveLength(1);
  });

  it("an observer's filter selects its copies", async () => {
    h = await t.start();
    const o = await t.connect({
      ...observe,
      filter: {
        family: 0,
        sourcePrefixes: [],
        destinationPrefixes: ["198.18.0.2/32"],
        temporaryOnly: false,
      },
    });
    h.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2, dst: "198.18.0.9" }));
    await o.waitEvents(1);
    await tick();
    expect(o.events.map((e) => e.sequence)).toEqual([1]);
  });

  it("an observer's verdicts are rejected as a protocol violation", async () => {
    h = await t.start();
    const o = await t.connect(observe);
    h.link.inject(v4Echo());
    const [copy] = await o.waitEvents(1);
    o.decide([copy], Action.ACTION_CONSUME);
    const [r] = await o.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION);
    expect(r.message).toMatch(/observe session sends no verdicts/);
  });

  it("a stalled observer never delays a decider", async () => {
    h = await t.start({ limits: { observerQueue: 8 } });
    const stalled = await t.connect(observe);
    stalled.call.pause(); // reads nothing from now on
    const d = await t.connect();
    d.call.on("data", () => {
      const fresh = d.events.filter((e) => !answered.has(e.requestId));
      for (const e of fresh) answered.add(e.requestId);
      if (fresh.length > 0) d.decide(fresh, Action.ACTION_REPLY);
    });
    const answered = new Set<bigint>();
    const big = new Uint8Array(8000);
    const started = performance.now();
    for (let i = 1; i <= 200; i++) {
      h.link.inject(v4Echo({ sequence: i, payload: big }));
      if (i % 20 === 0) await tick();
    }
    await d.until(() => h.counter("service.outcomes.reply.verdict") === 200, "200 verdicts");
    const elapsed = performance.now() - started;
    expect(h.counter("service.outcomes.fallthrough.timeout")).toBe(0);
    expect(h.counter("service.requests")).toBe(200);
    // The deadline is 1 s; 200 verdicts well inside it, the stalled observer notwithstanding.
    expect(elapsed).toBeLessThan(1000);
    expect(h.counter("service.observers.drops")).toBeGreaterThan(0);
  });

  it("a full observer queue drops copies, counts them and reports them to the session", async () => {
    h = await t.start({ limits: { observerQueue: 4 } });
    const o = await t.connect({ ...observe, payloadBytes: 65535 });
    o.call.pause();
    const big = new Uint8Array(30_000);
    for (let i = 1; i <= 40; i++) h.link.inject(v4Echo({ sequence: i, payload: big }));
    await tick();
    const copies = h.counter("service.observers.copies");
    const drops = h.counter("service.observers.drops");
    expect(copies + drops).toBe(40);
    expect(drops).toBeGreaterThan(0);
    const listed = h.service.listSessions().sessions[0];
    expect(listed.dropped).toBe(BigInt(drops));
    // Resumed, it learns how many it lost with its next batch.
    o.call.resume();
    await o.waitEvents(copies);
    h.link.inject(v4Echo({ sequence: 41 }));
    await o.until(() => o.observerDrops === BigInt(drops), "observer_drops reported");
  });
});

describe("observers and drain", () => {
  it("a server drain tells an observer Draining and ends its stream with OK", async () => {
    h = await t.start();
    const o = await t.connect(observe);
    await h.service.drain(1000);
    expect(o.drainingSeen).toBe(true);
    expect((await o.waitStatus()).code).toBe(0);
  });
});
