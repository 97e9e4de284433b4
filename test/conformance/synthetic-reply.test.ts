/**
 * The seed's proxy-owned reply: a handler copies the request (copyEchoRequest) and consumes it;
 * later sendSyntheticEchoReply answers from the original destination through route lookup,
 * with the TOS / traffic class preserved, counted, and with typed errors instead of silence.
 */
import { describe, expect, it } from "vitest";
import {
  copyEchoRequest,
  type EchoRequestCopy,
  isTcpipError,
  type StackOptions,
  sendSyntheticEchoReply,
} from "../../src/netstack/index.js";
import { payloadOf } from "../helpers/packets.js";
import { type TestStack, testStack } from "../helpers/stack.js";
import {
  BY_FAMILY,
  type EchoOptions,
  type Family,
  IPV4,
  install,
  oneReply,
  promiscuous,
  wire,
} from "./families.js";

/** A proxy's handler: copy, consume; returns the copies it took. */
function proxy(t: TestStack): EchoRequestCopy[] {
  const copies: EchoRequestCopy[] = [];
  install(t, (req) => {
    const c = copyEchoRequest(req);
    if (isTcpipError(c)) return false;
    copies.push(c);
    return true;
  });
  return copies;
}

function captured(
  f: Family,
  echo: EchoOptions,
  options: StackOptions & { routes?: boolean } = {},
  temporary = false,
) {
  const t = testStack(options);
  if (temporary) promiscuous(t);
  const copies = proxy(t);
  t.link.inject(f.echo(echo));
  expect(copies.length).toBe(1);
  expect(wire(t, f)).toEqual([]); // consumed: no built-in reply
  return { t, copy: copies[0] };
}

describe.each(BY_FAMILY)("synthetic replies, %s", (_, f) => {
  it("sendSyntheticEchoReply later sends an Echo Reply from the original destination: same ident/seq/payload, TOS kept, counted", () => {
    const payload = payloadOf(40, 0x61);
    const { t, copy } = captured(f, { ident: 0x1234, sequence: 9, tos: 0xb8, payload });
    t.clock.advance(300);
    expect(sendSyntheticEchoReply(t.stack, copy)).toBeNull();
    const r = oneReply(t, f);
    expect(r.src).toBe(f.local);
    expect(r.dst).toBe(f.remote);
    expect(r.ident).toBe(0x1234);
    expect(r.sequence).toBe(9);
    expect(r.payload).toEqual([...payload]);
    expect(r.tos).toBe(0xb8);
    expect(r.ttl).toBe(64);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("a synthetic reply for a temporary destination answers from that temporary address", () => {
    const { t, copy } = captured(f, { dst: f.temporary }, {}, true);
    expect(copy.destination.length).toBe(f.family === "ipv4" ? 4 : 16);
    expect(sendSyntheticEchoReply(t.stack, copy)).toBeNull();
    expect(oneReply(t, f).src).toBe(f.temporary);
    expect(f.sent(t.stack).echoReply).toBe(1);
  });

  it("{payload} replaces the payload; the Echo header stays the request's", () => {
    const { t, copy } = captured(f, { ident: 0x4321, sequence: 3 });
    const replacement = new TextEncoder().encode("upstream rtt 42ms");
    expect(sendSyntheticEchoReply(t.stack, copy, { payload: replacement })).toBeNull();
    const r = oneReply(t, f);
    expect(r.payload).toEqual([...replacement]);
    expect(r.ident).toBe(0x4321);
    expect(r.sequence).toBe(3);
  });

  it("the copy outlives the request: changing the packet inside the handler after copying does not change it", () => {
    const t = testStack();
    const copies: EchoRequestCopy[] = [];
    install(t, (req) => {
      const c = copyEchoRequest(req);
      if (isTcpipError(c)) return false;
      copies.push(c);
      req.packetBuffer().data.fill(0);
      return true;
    });
    t.link.inject(f.echo({ sequence: 5 }));
    expect(sendSyntheticEchoReply(t.stack, copies[0])).toBeNull();
    expect(oneReply(t, f).sequence).toBe(5);
  });

  it('with no route → returns {kind: "noRoute"} and sends nothing', () => {
    const { t, copy } = captured(f, {}, { routes: false });
    const err = sendSyntheticEchoReply(t.stack, copy);
    expect(err).toMatchObject({ kind: "noRoute" });
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack)).toMatchObject({ echoReply: 0, rateLimited: 0, dropped: 0, noRoute: 1 });
  });

  it('rate limited → returns {kind: "rateLimited"} and rateLimited moves by exactly 1', () => {
    const { t, copy } = captured(f, {}, f.rateLimitEchoReplies);
    const err = sendSyntheticEchoReply(t.stack, copy);
    expect(err).toMatchObject({ kind: "rateLimited" });
    expect(wire(t, f)).toEqual([]);
    expect(f.sent(t.stack)).toMatchObject({ echoReply: 0, rateLimited: 1, dropped: 0 });
  });

  it("copyEchoRequest refuses what is not an Echo Request", () => {
    const t = testStack();
    const results: unknown[] = [];
    install(t, (req) => {
      results.push(copyEchoRequest(req));
      return true;
    });
    t.link.inject(f.echo({ type: f.echoReply }));
    expect(results).toEqual([expect.objectContaining({ kind: "invalidEndpointState" })]);
  });
});

describe("synthetic replies, IPv4 broadcast", () => {
  it("a synthetic reply to a broadcast request answers from the NIC's primary address", () => {
    const { t, copy } = captured(IPV4, { dst: "198.18.0.255" });
    expect(copy.localAddressBroadcast).toBe(true);
    expect(sendSyntheticEchoReply(t.stack, copy)).toBeNull();
    expect(oneReply(t, IPV4).src).toBe("198.18.0.2");
  });
});
