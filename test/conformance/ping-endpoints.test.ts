/**
 * DESIGN.md §2 step 4 and §3 (last row): ping endpoints of the netstack are demultiplexed
 * first; they take Echo Requests with their ident (the default handler is skipped, the built-in
 * reply still runs), send Echo Requests, and receive the matching Echo Replies.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../src/netstack/address.js";
import {
  type EchoReplyEvent,
  type ForwarderRequest,
  isTcpipError,
  type PingEndpoint,
} from "../../src/netstack/index.js";
import { addr, payloadOf } from "../helpers/packets.js";
import { type TestStack, testStack } from "../helpers/stack.js";
import { BY_FAMILY, type Family, IPV4, install, oneReply, wire } from "./families.js";

function open(t: TestStack, f: Family, ident: number): PingEndpoint {
  const ep = t.stack.openPingEndpoint({ family: f.family, ident });
  if (isTcpipError(ep)) throw new Error(`openPingEndpoint: ${ep.message}`);
  return ep;
}

describe.each(BY_FAMILY)("ping endpoints, %s", (_, f) => {
  it("a ping endpoint bound to the request's ident: handler not called, built-in reply sent", () => {
    const t = testStack();
    open(t, f, 0x5151);
    const seen: ForwarderRequest[] = [];
    const fwd = install(t, (req) => {
      seen.push(req);
      return true;
    });
    t.link.inject(f.echo({ ident: 0x5151, sequence: 4 }));
    expect(seen.length).toBe(0);
    expect(fwd.stats.handled).toBe(0);
    const r = oneReply(t, f);
    expect(r.ident).toBe(0x5151);
    expect(r.sequence).toBe(4);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("a ping endpoint bound to another ident does not take the request: the handler decides", () => {
    const t = testStack();
    open(t, f, 0x5151);
    const fwd = install(t, () => true);
    t.link.inject(f.echo({ ident: 0x5152 }));
    expect(fwd.stats.handled).toBe(1);
    expect(wire(t, f)).toEqual([]);
  });

  it("sendEcho writes an Echo Request: its type, the endpoint's ident, the caller's sequence, valid checksums", () => {
    const t = testStack();
    const ep = open(t, f, 0x6161);
    const payload = payloadOf(24, 0x3c);
    expect(ep.sendEcho(addr(f.remote), 0x0102, payload)).toBeNull();
    const out = wire(t, f);
    expect(out.length).toBe(1);
    const p = out[0];
    expect(p.type).toBe(f.echoRequest);
    expect(p.code).toBe(0);
    expect(p.ident).toBe(0x6161);
    expect(p.sequence).toBe(0x0102);
    expect(p.payload).toEqual([...payload]);
    expect(p.checksumsValid).toBe(true);
    expect(p.src).toBe(f.local);
    expect(p.dst).toBe(f.remote);
    expect(p.ttl).toBe(64);
    expect(f.sent(t.stack).echoRequest).toBe(1);
  });

  it("the matching Echo Reply reaches onReply with its sequence, payload and TTL; the handler is not called", () => {
    const t = testStack();
    const ep = open(t, f, 0x6161);
    const events: EchoReplyEvent[] = [];
    ep.onReply = (e) => events.push(e);
    const fwd = install(t, () => true);
    expect(ep.sendEcho(addr(f.remote), 7, payloadOf(16))).toBeNull();
    t.link.drain();
    const payload = payloadOf(16);
    t.link.inject(
      f.echo({
        type: f.echoReply,
        src: f.remote,
        dst: f.local,
        ident: 0x6161,
        sequence: 7,
        ttl: 33,
        payload,
      }),
    );
    expect(fwd.stats.handled).toBe(0);
    expect(events.length).toBe(1);
    const e = events[0];
    expect(e.ident).toBe(0x6161);
    expect(e.sequence).toBe(7);
    expect([...e.payload]).toEqual([...payload]);
    expect(e.ttl).toBe(33);
    expect(formatAddress(e.remoteAddress)).toBe(f.remote);
    expect(formatAddress(e.localAddress)).toBe(f.local);
    expect(e.receivedAtMs).toBe(t.clock.nowMs());
    expect(f.received(t.stack).echoReply).toBe(1);
    // A ping endpoint never answers anything.
    expect(wire(t, f)).toEqual([]);
  });

  it("an Echo Reply for another ident goes to the default handler instead", () => {
    const t = testStack();
    const ep = open(t, f, 0x6161);
    const events: EchoReplyEvent[] = [];
    ep.onReply = (e) => events.push(e);
    const seen: { ident: number; reply: boolean }[] = [];
    install(t, (req) => {
      seen.push({ ident: req.id().localPort, reply: req.reply() });
      return true;
    });
    t.link.inject(f.echo({ type: f.echoReply, ident: 0x6162, sequence: 1 }));
    expect(events).toEqual([]);
    expect(seen).toEqual([{ ident: 0x6162, reply: false }]);
    expect(wire(t, f)).toEqual([]);
  });

  it("a closed ping endpoint takes nothing: the handler gets the request again", () => {
    const t = testStack();
    const ep = open(t, f, 0x5151);
    const fwd = install(t, () => true);
    ep.close();
    t.link.inject(f.echo({ ident: 0x5151 }));
    expect(fwd.stats.handled).toBe(1);
    expect(wire(t, f)).toEqual([]);
  });
});

describe("ping endpoints demultiplex Echo messages only", () => {
  it("a non-Echo message whose bytes 4–5 equal a ping endpoint's ident still reaches the handler (IPv4 Redirect, gateway 198.18.0.1)", () => {
    // Bytes 4–7 of a Redirect are the gateway address, not an ident: 198.18 reads as 0xc612.
    // gVisor hands ping endpoints Echo Replies only (errors go by the quoted packet's ident).
    const t = testStack();
    const ep = open(t, IPV4, 0xc612);
    const events: EchoReplyEvent[] = [];
    ep.onReply = (e) => events.push(e);
    const seen: { type: number; reply: boolean }[] = [];
    install(t, (req) => {
      seen.push({ type: req.packetBuffer().transportMessage()[0], reply: req.reply() });
      return true;
    });
    t.link.inject(IPV4.echo({ type: 5, code: 1, ident: 0xc612, sequence: 0x0001 }));
    expect(t.stack.stats.icmp.v4.packetsReceived.redirect).toBe(1);
    expect(events).toEqual([]);
    expect(seen).toEqual([{ type: 5, reply: false }]);
  });
});
