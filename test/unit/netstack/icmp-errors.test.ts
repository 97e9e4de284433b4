/**
 * The ICMP errors the stack originates and when it must not (RFC 1812 §4.3.2.7, RFC 4443 §2.4),
 * as gVisor's returnError sends them: through the route back and the rate limiter.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import { IPv4Header } from "../../../src/netstack/header/ipv4.js";
import {
  optionsHeader,
  parseICMPv4Error,
  parseICMPv6Error,
  v4Datagram,
  v6Chain,
} from "../../helpers/ip-packets.js";
import { payloadOf, v4Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

type T = ReturnType<typeof testStack>;

function exchange(t: T, packet: Uint8Array): Uint8Array | null {
  t.link.inject(packet);
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  return out[0] ?? null;
}

/** A bad Record Route pointer: Parameter Problem at 22. */
const BAD_OPTION = Uint8Array.of(7, 8, 0, 0, 0, 0, 0, 0);

describe("ICMPv4 errors the stack originates", () => {
  it("answers an unknown transport protocol with Destination Unreachable, protocol unreachable", () => {
    const t = testStack();
    const datagram = v4Datagram({ protocol: 99 });
    const out = exchange(t, datagram.slice());
    const e = parseICMPv4Error(out!);
    expect([e.type, e.code]).toEqual([3, 2]);
    expect([...e.quoted]).toEqual([...datagram]);
    expect(formatAddress(e.src)).toBe("198.18.0.2");
    expect(formatAddress(e.dst)).toBe("198.18.0.1");
    expect(e.ttl).toBe(64);
    expect(e.tos).toBe(0);
    expect(e.checksumOk).toBe(true);
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.dstUnreachable).toBe(1);
  });

  it("processes the options of an unknown protocol first: a bad one gets Parameter Problem", () => {
    const t = testStack();
    const e = parseICMPv4Error(exchange(t, v4Datagram({ protocol: 99, options: BAD_OPTION }))!);
    expect([e.type, e.code, e.pointer]).toEqual([12, 0, 22]);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(0);
  });

  it("sends no error for a datagram to the subnet broadcast address", () => {
    const t = testStack();
    expect(exchange(t, v4Datagram({ protocol: 99, dst: "198.18.0.255" }))).toBeNull();
    expect(exchange(t, v4Echo({ dst: "198.18.0.255", options: BAD_OPTION }))).toBeNull();
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.dstUnreachable).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.paramProblem).toBe(0);
  });

  it("sends no error for a datagram to the limited broadcast address", () => {
    const t = testStack();
    expect(exchange(t, v4Datagram({ protocol: 99, dst: "255.255.255.255" }))).toBeNull();
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(1);
  });

  it("sends no error for a datagram to a multicast group", () => {
    const t = testStack();
    expect(exchange(t, v4Datagram({ protocol: 99, dst: "224.0.0.1" }))).toBeNull();
    expect(exchange(t, v4Echo({ dst: "224.0.0.1", options: BAD_OPTION }))).toBeNull();
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
  });

  it("sends no error in answer to an ICMP error", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ type: 3, options: BAD_OPTION }))).toBeNull();
    expect(exchange(t, v4Echo({ type: 12, options: BAD_OPTION }))).toBeNull();
    expect(exchange(t, v4Echo({ type: 42, options: BAD_OPTION }))).toBeNull();
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(3);
    expect(t.stack.stats.icmp.v4.packetsSent.paramProblem).toBe(0);
  });

  it("answers an informational ICMP message (Timestamp) with a bad option", () => {
    const t = testStack();
    const e = parseICMPv4Error(exchange(t, v4Echo({ type: 13, options: BAD_OPTION }))!);
    expect([e.type, e.pointer]).toEqual([12, 22]);
  });

  it("sends no error for an unspecified source", () => {
    const t = testStack();
    expect(exchange(t, v4Datagram({ protocol: 99, src: "0.0.0.0" }))).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsSent.noRoute).toBe(0);
  });

  it("counts an error with no route back as noRoute", () => {
    const t = testStack({ routes: false });
    expect(exchange(t, v4Datagram({ protocol: 99 }))).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsSent.noRoute).toBe(1);
  });

  it("quotes as much of the datagram as fits in 576 bytes", () => {
    const t = testStack();
    const datagram = v4Datagram({ protocol: 99, payload: payloadOf(1000) });
    const out = exchange(t, datagram.slice())!;
    expect(new IPv4Header(out).totalLength).toBe(576);
    expect([...parseICMPv4Error(out).quoted]).toEqual([...datagram.subarray(0, 548)]);
  });

  it("puts errors through the rate limiter (types 3 and 12 are in the default mask)", () => {
    const t = testStack({ icmpBurst: 2 });
    for (let i = 0; i < 3; i++) t.link.inject(v4Datagram({ protocol: 99 }));
    for (let i = 0; i < 2; i++) t.link.inject(v4Echo({ options: BAD_OPTION }));
    expect(t.link.drain().length).toBe(2);
    const sent = t.stack.stats.icmp.v4.packetsSent;
    expect(sent.dstUnreachable).toBe(2);
    expect(sent.paramProblem).toBe(0);
    expect(sent.rateLimited).toBe(3);
  });

  it("answers from the temporary address a promiscuous NIC accepted", () => {
    const t = testStack();
    t.stack.setPromiscuousMode(1, true);
    const e = parseICMPv4Error(exchange(t, v4Datagram({ protocol: 99, dst: "198.18.0.77" }))!);
    expect(formatAddress(e.src)).toBe("198.18.0.77");
  });
});

describe("ICMPv6 errors the stack originates", () => {
  it("sends no error for an unknown Next Header to a multicast group", () => {
    const t = testStack();
    const p = v6Chain({ src: "fe80::1", dst: "ff02::1", upper: 17, upperBytes: new Uint8Array(8) });
    expect(exchange(t, p)).toBeNull();
    expect(t.stack.stats.ipv6.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(0);
  });

  it("sends no error in answer to an ICMPv6 error or Redirect", () => {
    const t = testStack();
    for (const type of [1, 4, 127, 137]) {
      const p = v6Chain({ headers: [optionsHeader(0, [0x9e, 0])], type });
      expect(exchange(t, p)).toBeNull();
    }
    expect(t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(4);
    expect(t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(0);
  });

  it("answers an informational ICMPv6 message (Echo Reply) with an unknown 10 option", () => {
    const t = testStack();
    const p = v6Chain({ headers: [optionsHeader(0, [0x9e, 0])], type: 129 });
    expect(parseICMPv6Error(exchange(t, p)!).type).toBe(4);
  });

  it("sends no error for an unspecified source", () => {
    const t = testStack();
    expect(
      exchange(t, v6Chain({ src: "::", upper: 17, upperBytes: new Uint8Array(8) })),
    ).toBeNull();
    expect(t.stack.stats.icmp.v6.packetsSent.noRoute).toBe(0);
  });

  it("quotes as much of the packet as keeps the error within 1280 bytes", () => {
    const t = testStack();
    const p = v6Chain({ upper: 17, upperBytes: payloadOf(1400) });
    const out = exchange(t, p.slice())!;
    expect(out.length).toBe(1280);
    expect([...parseICMPv6Error(out).quoted]).toEqual([...p.subarray(0, 1232)]);
  });

  it("chooses a link-local source for a link-local peer", () => {
    const t = testStack();
    const e = parseICMPv6Error(
      exchange(
        t,
        v6Chain({ src: "fe80::1", dst: "fe80::2", upper: 17, upperBytes: new Uint8Array(8) }),
      )!,
    );
    expect(formatAddress(e.src)).toBe("fe80::2");
    expect(formatAddress(e.dst)).toBe("fe80::1");
    expect(e.ttl).toBe(64);
  });

  it("puts Parameter Problem through the rate limiter (type 4 is in the default mask)", () => {
    const t = testStack({ icmpBurst: 1 });
    for (let i = 0; i < 3; i++)
      t.link.inject(v6Chain({ upper: 17, upperBytes: new Uint8Array(8) }));
    expect(t.link.drain().length).toBe(1);
    expect(t.stack.stats.icmp.v6.packetsSent.rateLimited).toBe(2);
  });

  it("counts an error with no route back as noRoute", () => {
    const t = testStack({ routes: false });
    expect(exchange(t, v6Chain({ upper: 17, upperBytes: new Uint8Array(8) }))).toBeNull();
    expect(t.stack.stats.icmp.v6.packetsSent.noRoute).toBe(1);
  });
});
