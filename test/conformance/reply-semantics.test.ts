/**
 * DESIGN.md §3, the bullets under the table: what reply() returns and how often the built-in
 * path runs, whatever the handler does around it.
 */
import { describe, expect, it } from "vitest";
import type { TransportEndpointID } from "../../src/netstack/index.js";
import { payloadOf } from "../helpers/packets.js";
import { testStack } from "../helpers/stack.js";
import { BY_FAMILY, install, oneReply, wire } from "./families.js";

describe.each(BY_FAMILY)("reply(), %s", (_, f) => {
  it("reply() is idempotent: a second call returns the first call's value, one packet on the wire", () => {
    const t = testStack();
    const answers: boolean[] = [];
    install(t, (req) => {
      answers.push(req.reply(), req.reply(), req.reply());
      return true;
    });
    t.link.inject(f.echo());
    expect(answers).toEqual([true, true, true]);
    oneReply(t, f);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("reply() then return false → exactly one reply (the fallback does not send a duplicate)", () => {
    const t = testStack();
    install(t, (req) => {
      req.reply();
      return false;
    });
    t.link.inject(f.echo({ sequence: 77 }));
    expect(oneReply(t, f).sequence).toBe(77);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("reply() answers the request as received, even if the handler changed the packet first", () => {
    const t = testStack();
    install(t, (req) => {
      req.packetBuffer().data.fill(0);
      return req.reply();
    });
    t.link.inject(f.echo({ ident: 0x0abc, sequence: 6, payload: payloadOf(8, 0x11) }));
    const r = oneReply(t, f);
    expect(r.src).toBe(f.local);
    expect(r.dst).toBe(f.remote);
    expect(r.ident).toBe(0x0abc);
    expect(r.sequence).toBe(6);
    expect(r.payload).toEqual([...payloadOf(8, 0x11)]);
  });

  it("reply() returns false for an Echo Reply delivered to the handler, and sends nothing", () => {
    const t = testStack();
    const seen: { type: number; reply: boolean; id: TransportEndpointID }[] = [];
    const fwd = install(t, (req) => {
      const pkt = req.packetBuffer();
      seen.push({ type: pkt.transportMessage()[0], reply: req.reply(), id: req.id() });
      return false;
    });
    t.link.inject(f.echo({ type: f.echoReply, ident: 0x0bad }));
    expect(seen.map(({ type, reply }) => ({ type, reply }))).toEqual([
      { type: f.echoReply, reply: false },
    ]);
    expect(seen[0].id.localPort).toBe(0x0bad);
    expect(fwd.stats.handled).toBe(1);
    expect(wire(t, f)).toEqual([]);
    expect(f.received(t.stack).echoReply).toBe(1);
    expect(f.sent(t.stack).echoReply).toBe(0);
  });

  it("reply() returns false for a Destination Unreachable delivered to the handler, and sends nothing", () => {
    const t = testStack();
    const seen: { type: number; reply: boolean }[] = [];
    install(t, (req) => {
      seen.push({ type: req.packetBuffer().transportMessage()[0], reply: req.reply() });
      return false;
    });
    t.link.inject(f.echo({ type: f.dstUnreachable, code: 1 }));
    // The handler receives non-echo ICMP (forwarder.ts: "hands every ICMP packet no ping
    // endpoint took to `handler`"), and reply() refuses it.
    expect(seen).toEqual([{ type: f.dstUnreachable, reply: false }]);
    expect(wire(t, f)).toEqual([]);
  });

  it("reply() on a rate-limited path returns true; rateLimited moves by exactly 1, nothing sent", () => {
    const t = testStack(f.rateLimitEchoReplies);
    const answers: boolean[] = [];
    install(t, (req) => {
      answers.push(req.reply());
      return false; // the fallback must not try a second time
    });
    t.link.inject(f.echo());
    expect(answers).toEqual([true]);
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack)).toMatchObject({ echoReply: 0, rateLimited: 1, dropped: 0 });
  });

  it("reply() with no route back returns true, nothing is sent, and noRoute counts it", () => {
    const t = testStack({ routes: false });
    const answers: boolean[] = [];
    install(t, (req) => {
      answers.push(req.reply());
      return false;
    });
    t.link.inject(f.echo());
    expect(answers).toEqual([true]);
    expect(wire(t, f)).toEqual([]);
    expect(f.received(t.stack).echoRequest).toBe(1);
    expect(f.sent(t.stack)).toMatchObject({ echoReply: 0, rateLimited: 0, dropped: 0, noRoute: 1 });
    expect(t.stack.stats.nic.packetsSent).toBe(0);
  });
});
