/**
 * The dispatcher's one guarantee under any interleaving: every Echo Request gets exactly one
 * outcome. fast-check drives a real stack (in-memory link) and the dispatcher with a manual
 * clock and timers, in-memory sessions, and random verdicts (right, foreign, duplicate, late,
 * invalid), deadlines, session ends, client drains, unwritable sessions and a server drain.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Action, type Verdict } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { ICMPV4_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { Forwarder } from "../../../src/netstack/icmp/forwarder.js";
import type { Scheduler } from "../../../src/service/deadlines.js";
import {
  Dispatcher,
  type FailurePolicy,
  type PendingRequest,
  type SessionSink,
  type SessionSlot,
} from "../../../src/service/dispatcher.js";
import type { RejectionKind } from "../../../src/service/errors.js";
import { SessionFilter } from "../../../src/service/filter.js";
import { Verdicts } from "../../../src/service/wire.js";
import { v4Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

/** Timers that fire only when the test advances the clock. */
class ManualScheduler implements Scheduler {
  now = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  nowMs(): number {
    return this.now;
  }
  setTimer(fn: () => void, delayMs: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + delayMs, fn });
    return id;
  }
  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers)
        if (e[1].at <= target && (next === null || e[1].at < next[1].at)) next = e;
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
    }
    this.now = target;
  }
}

class FakeSession implements SessionSink {
  slot!: SessionSlot;
  readonly received: PendingRequest[] = [];
  readonly rejected: RejectionKind[] = [];
  idled = 0;
  writable = true;
  send(p: PendingRequest): void {
    this.received.push(p);
  }
  reject(_id: bigint, kind: RejectionKind): void {
    this.rejected.push(kind);
  }
  idle(): void {
    this.idled++;
  }
}

type Op =
  | { op: "inject"; flow: number; count: number }
  | { op: "open"; maxInFlight: number; family: "any" | "ipv6" }
  | {
      op: "verdict";
      session: number;
      pick: number;
      action: number;
      flowMs: number;
      dup: boolean;
      stale: boolean;
    }
  | { op: "stray"; session: number; id: number }
  | { op: "advance"; ms: number }
  | { op: "close"; session: number }
  | { op: "drain"; session: number }
  | { op: "writable"; session: number; writable: boolean }
  | { op: "serverDrain" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("inject" as const),
      flow: fc.nat(3),
      count: fc.integer({ min: 1, max: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("open" as const),
      maxInFlight: fc.integer({ min: 1, max: 12 }),
      family: fc.constantFrom("any" as const, "ipv6" as const),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("verdict" as const),
      session: fc.nat(5),
      pick: fc.nat(20),
      action: fc.integer({ min: 0, max: 4 }),
      flowMs: fc.constantFrom(0, 0, 0, 200),
      dup: fc.boolean(),
      // Mostly a request the session holds; sometimes one it held before (late, duplicate).
      stale: fc.integer({ min: 0, max: 9 }).map((n) => n < 3),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("stray" as const), session: fc.nat(5), id: fc.nat(40) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("advance" as const),
      ms: fc.integer({ min: 1, max: 80 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("close" as const), session: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("drain" as const), session: fc.nat(5) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("writable" as const),
      session: fc.nat(5),
      writable: fc.boolean(),
    }),
  },
);

/** Sessions open at the start (then more may come), and the server drain only late if at all. */
const scenarioArb = fc
  .tuple(
    fc.array(
      fc.record({
        op: fc.constant("open" as const),
        maxInFlight: fc.integer({ min: 1, max: 12 }),
        family: fc.constantFrom("any" as const, "any" as const, "ipv6" as const),
      }),
      { minLength: 0, maxLength: 3 },
    ),
    fc.array(opArb, { minLength: 1, maxLength: 60 }),
    fc.option(fc.nat(), { freq: 3 }),
  )
  .map(([opens, ops, drainAt]): Op[] => {
    const all: Op[] = [...opens, ...ops];
    if (drainAt !== null) all.splice(all.length - (drainAt % 10), 0, { op: "serverDrain" });
    return all;
  });

const policyArb: fc.Arbitrary<FailurePolicy> = fc.record({
  onTimeout: fc.constantFrom("fallthrough" as const, "consume" as const),
  onNoClient: fc.constantFrom("fallthrough" as const, "consume" as const),
  onOverload: fc.constantFrom("fallthrough" as const, "consume" as const),
  onDisconnect: fc.constantFrom("fallthrough" as const, "consume" as const),
});

const settle = () => new Promise<void>((r) => setImmediate(r));

/** The dispatcher's pending bound and the Forwarder's held bound: either may bind first. */
const boundsArb = fc.constantFrom({ maxPending: 6, maxHeld: 10 }, { maxPending: 12, maxHeld: 10 });

async function run(
  ops: readonly Op[],
  policy: FailurePolicy,
  bounds: { maxPending: number; maxHeld: number },
): Promise<void> {
  const { stack, link } = testStack();
  const scheduler = new ManualScheduler();
  const d = new Dispatcher({
    deadlineMs: 50,
    policy,
    syntheticWindowMs: 10_000,
    scheduler,
    maxPending: bounds.maxPending,
    flowTableSize: 2,
  });
  const fwd = new Forwarder(d.handle, {
    maxHeld: bounds.maxHeld,
    onOverflow: policy.onOverload,
  });
  stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, fwd.handlePacket);
  const sessions: FakeSession[] = [];
  let injected = 0;
  let seq = 0;
  const at = (i: number): FakeSession | undefined =>
    sessions.length === 0 ? undefined : sessions[i % sessions.length];

  for (const o of ops) {
    switch (o.op) {
      case "inject":
        for (let k = 0; k < o.count; k++) {
          link.inject(v4Echo({ ident: 0x100 + o.flow, sequence: ++seq }));
          injected++;
        }
        break;
      case "open": {
        const s = new FakeSession();
        const filter = SessionFilter.compile(
          o.family === "ipv6"
            ? { family: 2, sourcePrefixes: [], destinationPrefixes: [], temporaryOnly: false }
            : undefined,
        ) as SessionFilter;
        s.slot = d.openSession(filter, o.maxInFlight, s);
        sessions.push(s);
        break;
      }
      case "verdict": {
        // A session that holds something (or, for a stale verdict, ever held something).
        const able = sessions.filter((x) =>
          o.stale ? x.received.length > 0 : x.slot.inFlight > 0,
        );
        if (able.length === 0) break;
        const s = able[o.session % able.length];
        const held = s.slot.inFlightRequests();
        const from = o.stale || held.length === 0 ? s.received : held;
        const p = from[o.pick % from.length];
        const v: Verdict = {
          requestId: BigInt(p.id),
          action: o.action as Action,
          applyToFlowMs: o.flowMs,
        };
        if (!s.slot.closed) d.decide(s.slot, Verdicts.of(o.dup ? [v, v] : [v]));
        break;
      }
      case "stray": {
        const s = at(o.session);
        if (s !== undefined && !s.slot.closed)
          d.decide(
            s.slot,
            Verdicts.of([
              // Around the ids issued so far: pending elsewhere (foreign), ended, or never issued.
              {
                requestId: BigInt(o.id % (seq + 3)),
                action: Action.ACTION_CONSUME,
                applyToFlowMs: 0,
              },
            ]),
          );
        break;
      }
      case "advance":
        scheduler.advance(o.ms);
        break;
      case "close": {
        const s = at(o.session);
        if (s !== undefined) d.closeSession(s.slot);
        break;
      }
      case "drain": {
        const s = at(o.session);
        if (s !== undefined) d.drainSession(s.slot);
        break;
      }
      case "writable": {
        const s = at(o.session);
        if (s !== undefined) s.writable = o.writable;
        break;
      }
      case "serverDrain":
        d.beginDrain();
        break;
    }
    await settle();
    // Invariant at every step: what is not decided is pending, and vice versa.
    const c = d.counters;
    expect(c.decided() + d.pendingCount + fwd.stats.overflow).toBe(injected);
    expect(d.deadlineState.entries).toBe(d.pendingCount);
  }

  // Let every deadline pass: nothing may stay pending, and no timer may stay armed.
  scheduler.advance(1000);
  await settle();
  const c = d.counters;
  expect(d.pendingCount).toBe(0);
  expect(d.deadlineState).toEqual({ entries: 0, armed: false });
  expect(scheduler.timers.size).toBe(0);
  expect(c.requests + fwd.stats.overflow).toBe(injected);
  expect(c.decided()).toBe(c.requests);
  for (const s of sessions) expect(s.slot.inFlight).toBe(0);
  expect(fwd.stats.held).toBe(0);
  expect(fwd.stats.handled).toBe(c.requests);
  // Exactly one outcome on the wire too: one Echo Reply per reply or fallthrough outcome
  // (the forwarder's overflow follows on-overload), none per consume.
  const o = c.outcomes;
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  const overflowReplies = policy.onOverload === "fallthrough" ? fwd.stats.overflow : 0;
  expect(link.drain().length).toBe(sum(o.reply) + sum(o.fallthrough) + overflowReplies);
  expect(fwd.stats.consumed).toBe(sum(o.reply) + sum(o.consume));
  // Every verdict that did not give an outcome was rejected and counted.
  const rejected = sessions.reduce((n, s) => n + s.rejected.length, 0);
  expect(sum(c.rejections)).toBe(rejected);
}

describe("dispatcher under random interleavings", () => {
  it("gives every request exactly one outcome; counters add up; no pending entry or timer remains", async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, policyArb, boundsArb, run), { numRuns: 500 });
  }, 60_000);
});
