/**
 * DESIGN.md §3, the TypeScript addition: a handler may return Promise<boolean>; the packet is
 * held (and the request stays valid) until it settles; a per-forwarder bound on held packets
 * with onOverflow "fallthrough" | "consume". Plus a handler that throws.
 */
import { describe, expect, it } from "vitest";
import { type ForwarderRequest, RequestExpired } from "../../src/netstack/index.js";
import { testStack } from "../helpers/stack.js";
import { BY_FAMILY, deferred, install, oneReply, settle, wire } from "./families.js";

describe.each(BY_FAMILY)("async handlers, %s", (_, f) => {
  it("promise resolves true → no reply", async () => {
    const t = testStack();
    const d = deferred<boolean>();
    const fwd = install(t, () => d.promise);
    t.link.inject(f.echo());
    expect(fwd.stats.held).toBe(1);
    d.resolve(true);
    await settle();
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack).echoReply).toBe(0);
    expect(fwd.stats).toMatchObject({ handled: 1, consumed: 1, notConsumed: 0, held: 0 });
  });

  it("promise resolves false → reply, sent only once the promise settles", async () => {
    const t = testStack();
    const d = deferred<boolean>();
    const fwd = install(t, () => d.promise);
    t.link.inject(f.echo({ sequence: 12 }));
    await settle();
    expect(wire(t, f)).toEqual([]); // held: nothing yet
    d.resolve(false);
    await settle();
    expect(oneReply(t, f).sequence).toBe(12);
    expect(f.sent(t.stack).echoReply).toBe(1);
    expect(fwd.stats).toMatchObject({ handled: 1, consumed: 0, notConsumed: 1, held: 0 });
  });

  it("promise rejects → reply, and forwarder.stats.rejected = 1", async () => {
    const t = testStack();
    const d = deferred<boolean>();
    const fwd = install(t, () => d.promise);
    t.link.inject(f.echo());
    d.reject(new Error("policy backend down"));
    await settle();
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
    expect(fwd.stats).toMatchObject({
      handled: 1,
      rejected: 1,
      thrown: 0,
      notConsumed: 1,
      held: 0,
    });
  });

  it("the request stays valid until the promise settles (packetBuffer() and reply() work) and expires after", async () => {
    const t = testStack();
    const d = deferred<boolean>();
    const saved: ForwarderRequest[] = [];
    install(t, (req) => {
      saved.push(req);
      return d.promise;
    });
    t.link.inject(f.echo({ sequence: 21 }));
    await settle();
    expect(saved.length).toBe(1);
    const req = saved[0];
    // Still pending, a macrotask later: the request is live.
    expect(req.packetBuffer().transportMessage()[0]).toBe(f.echoRequest);
    expect(req.reply()).toBe(true);
    expect(oneReply(t, f).sequence).toBe(21); // reply() sends at once, before the settle
    d.resolve(false);
    await settle();
    expect(() => req.packetBuffer()).toThrow(RequestExpired);
    expect(req.reply()).toBe(false);
    expect(wire(t, f)).toEqual([]); // no fallback duplicate
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("over the bound (maxHeld 2), onOverflow fallthrough → the third is replied without calling the handler", async () => {
    const t = testStack();
    const pending = [deferred<boolean>(), deferred<boolean>()];
    const calls: number[] = [];
    const fwd = install(
      t,
      (req) => {
        calls.push(req.packetBuffer().transportMessage()[7]);
        return pending[calls.length - 1].promise;
      },
      { maxHeld: 2, onOverflow: "fallthrough" },
    );
    t.link.inject(f.echo({ sequence: 1 }), f.echo({ sequence: 2 }), f.echo({ sequence: 3 }));
    expect(calls).toEqual([1, 2]);
    expect(fwd.stats).toMatchObject({ handled: 2, held: 2, overflow: 1 });
    expect(oneReply(t, f).sequence).toBe(3);
    for (const p of pending) p.resolve(true);
    await settle();
    expect(wire(t, f)).toEqual([]);
    expect(fwd.stats).toMatchObject({ handled: 2, held: 0, overflow: 1, consumed: 2 });
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("over the bound (maxHeld 2), onOverflow consume → the third is not replied and the handler is not called", async () => {
    const t = testStack();
    const pending = [deferred<boolean>(), deferred<boolean>()];
    const calls: number[] = [];
    const fwd = install(
      t,
      (req) => {
        calls.push(req.packetBuffer().transportMessage()[7]);
        return pending[calls.length - 1].promise;
      },
      { maxHeld: 2, onOverflow: "consume" },
    );
    t.link.inject(f.echo({ sequence: 1 }), f.echo({ sequence: 2 }), f.echo({ sequence: 3 }));
    expect(calls).toEqual([1, 2]);
    expect(fwd.stats).toMatchObject({ handled: 2, held: 2, overflow: 1 });
    expect(wire(t, f)).toEqual([]);
    for (const p of pending) p.resolve(false);
    await settle();
    expect(wire(t, f).map((r) => r.sequence)).toEqual([1, 2]);
    expect(fwd.stats).toMatchObject({ handled: 2, held: 0, overflow: 1, notConsumed: 2 });
    expect(f.sent(t.stack).echoReply).toBe(2);
  });

  it("once held requests settle, the bound frees up: the next request reaches the handler", async () => {
    const t = testStack();
    const d = deferred<boolean>();
    const fwd = install(t, () => d.promise, { maxHeld: 1, onOverflow: "consume" });
    t.link.inject(f.echo({ sequence: 1 }));
    d.resolve(true);
    await settle();
    t.link.inject(f.echo({ sequence: 2 }));
    expect(fwd.stats).toMatchObject({ handled: 2, overflow: 0 });
  });

  it("a synchronously throwing handler → counted thrown, treated as false (reply sent)", () => {
    const t = testStack();
    const fwd = install(t, () => {
      throw new Error("bug in the handler");
    });
    t.link.inject(f.echo());
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
    expect(fwd.stats).toMatchObject({ handled: 1, thrown: 1, rejected: 0, notConsumed: 1 });
  });

  it("a handler that throws after reply() → exactly one reply", () => {
    const t = testStack();
    const fwd = install(t, (req) => {
      req.reply();
      throw new Error("after reply");
    });
    t.link.inject(f.echo());
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
    expect(fwd.stats.thrown).toBe(1);
  });
});
