/**
 * IPv6 extension headers on the way to ICMPv6, as RFC 8200 §4 orders and gVisor's
 * processExtensionHeaders does: options by their two high bits, hop-by-hop first only, routing
 * with segments left, fragments, No Next Header; none of them echoed in the reply.
 */
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import { checksum, pseudoHeaderChecksum } from "../../../src/netstack/header/checksum.js";
import { IPv6Header } from "../../../src/netstack/header/ipv6.js";
import {
  type ExtensionHeader,
  fragmentHeader,
  optionsHeader,
  parseICMPv6Error,
  routingHeader,
  type V6ChainOptions,
  v6Chain,
} from "../../helpers/ip-packets.js";
import { testStack } from "../../helpers/stack.js";

const HBH = 0;
const DST = 60;

function send(o: V6ChainOptions) {
  const t = testStack();
  const packet = v6Chain(o);
  t.link.inject(packet.slice());
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  return { t, packet, out: out[0] ?? null };
}

function expectEchoReply(headers: ExtensionHeader[], dst?: string) {
  const r = send({ headers, dst });
  expect(r.out).not.toBeNull();
  const ip = new IPv6Header(r.out!);
  expect(ip.nextHeader).toBe(58);
  expect(r.out!.length).toBe(40 + 8 + 16);
  const msg = r.out!.subarray(40);
  expect(msg[0]).toBe(129);
  const pseudo = pseudoHeaderChecksum(58, ip.sourceAddress, ip.destinationAddress, msg.length);
  expect(checksum(msg, pseudo)).toBe(0xffff);
  expect(r.t.stack.stats.ipv6.packetsDelivered).toBe(1);
  return r;
}

function expectParameterProblem(o: V6ChainOptions, code: number, pointer: number) {
  const r = send(o);
  expect(r.out).not.toBeNull();
  const e = parseICMPv6Error(r.out!);
  expect(e.type).toBe(4);
  expect(e.code).toBe(code);
  expect(e.pointer).toBe(pointer);
  expect([...e.quoted]).toEqual([...r.packet]);
  expect(e.checksumOk).toBe(true);
  expect(r.t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(1);
  expect(r.t.stack.stats.ipv6.packetsDelivered).toBe(0);
  return { ...r, error: e };
}

function expectDropped(o: V6ChainOptions) {
  const r = send(o);
  expect(r.out).toBeNull();
  expect(r.t.stack.stats.ipv6.packetsDelivered).toBe(0);
  return r;
}

describe("IPv6 hop-by-hop and destination options (RFC 8200 §4.2)", () => {
  it("skips Pad1 and PadN and answers the Echo Request without the header", () => {
    expectEchoReply([optionsHeader(HBH, [0, 0, 1, 2, 0, 0])]);
  });

  it("accepts one Router Alert in the hop-by-hop header and counts it", () => {
    const r = expectEchoReply([optionsHeader(HBH, [5, 2, 0, 0])]);
    expect(r.t.stack.stats.ipv6.optionRouterAlertReceived).toBe(1);
  });

  it("drops two Router Alert options as malformed", () => {
    const r = expectDropped({ headers: [optionsHeader(HBH, [5, 2, 0, 0, 5, 2, 0, 0])] });
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("drops a Router Alert with a length other than 2 as malformed", () => {
    const r = expectDropped({ headers: [optionsHeader(HBH, [5, 1, 0])] });
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("skips an unrecognized option whose high bits are 00", () => {
    expectEchoReply([optionsHeader(HBH, [0x1e, 2, 0xaa, 0xbb])]);
  });

  it("silently discards for an unrecognized option whose high bits are 01", () => {
    const r = expectDropped({ headers: [optionsHeader(HBH, [0x5e, 0])] });
    expect(r.t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(1);
    expect(r.t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(0);
  });

  it("answers an unrecognized option whose high bits are 10 with Parameter Problem code 2", () => {
    // PadN (3 bytes) first: the option sits at 40 + 2 + 3.
    const r = expectParameterProblem({ headers: [optionsHeader(HBH, [1, 1, 0, 0x9e, 0])] }, 2, 45);
    expect(r.t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(1);
  });

  it("answers an option with high bits 10 even when sent to a multicast group", () => {
    const r = expectParameterProblem(
      { src: "fe80::1", dst: "ff02::1", headers: [optionsHeader(HBH, [0x9e, 0])] },
      2,
      42,
    );
    expect(formatAddress(r.error.src)).toBe("fe80::2");
  });

  it("answers an unrecognized option whose high bits are 11 with Parameter Problem code 2", () => {
    expectParameterProblem({ headers: [optionsHeader(HBH, [0xde, 0])] }, 2, 42);
  });

  it("silently discards for an option with high bits 11 sent to a multicast group", () => {
    const r = expectDropped({
      src: "fe80::1",
      dst: "ff02::1",
      headers: [optionsHeader(HBH, [0xde, 0])],
    });
    expect(r.t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(1);
  });

  it("applies the same actions in a destination options header", () => {
    expectEchoReply([optionsHeader(DST, [0x1e, 0])]);
    expectParameterProblem({ headers: [optionsHeader(DST, [0x9e, 0])] }, 2, 42);
    const r = expectDropped({ headers: [optionsHeader(DST, [0x5e, 0])] });
    expect(r.t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(1);
  });

  it("points at the option in a later header by its offset in the packet", () => {
    expectParameterProblem(
      { headers: [optionsHeader(HBH, [1, 0]), optionsHeader(DST, [1, 1, 0, 0x9e, 0])] },
      2,
      48 + 2 + 3,
    );
  });

  it("drops an option that runs past its header as malformed", () => {
    const h = optionsHeader(HBH, [0x1e, 0]);
    h.body[2] = 10;
    const r = expectDropped({ headers: [h] });
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("drops an option whose length octet is missing as malformed", () => {
    const h = optionsHeader(HBH, [1, 2, 0, 0]);
    // The header's last octet starts an option: Pad1, then type 0x1e with no length.
    h.body[5] = 0;
    h.body[6] = 0x1e;
    const r = expectDropped({ headers: [h] });
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });
});

describe("IPv6 extension header chain (RFC 8200 §4)", () => {
  it("answers a hop-by-hop header that is not first with Parameter Problem code 1", () => {
    const r = expectParameterProblem(
      { headers: [optionsHeader(DST, [1, 0]), optionsHeader(HBH, [1, 0])] },
      1,
      40,
    );
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("ignores a routing header with segments left 0", () => {
    expectEchoReply([routingHeader(4, 0)]);
  });

  it("answers a routing header with segments left with Parameter Problem code 0 at the type", () => {
    const r = expectParameterProblem({ headers: [routingHeader(4, 1)] }, 0, 42);
    expect(r.t.stack.stats.ipv6.unsupportedHeadersReceived).toBe(1);
  });

  it("processes an atomic fragment (RFC 6946) as the whole packet", () => {
    expectEchoReply([fragmentHeader(0, false)]);
  });

  it("holds a real fragment for reassembly (see reassembly.test.ts)", () => {
    const first = expectDropped({ headers: [fragmentHeader(0, true)] });
    expect(first.t.stack.stats.ipv6.fragmentsQueued).toBe(1);
    expect(first.t.stack.stats.ipv6.fragmentsReceivedUnsupported).toBe(0);
    const later = expectDropped({ headers: [fragmentHeader(64, false)] });
    expect(later.t.stack.stats.ipv6.fragmentsQueued).toBe(1);
  });

  it("answers an unknown Next Header in the fixed header with Parameter Problem code 1 at 6", () => {
    const r = expectParameterProblem({ upper: 17, upperBytes: new Uint8Array(16) }, 1, 6);
    expect(r.t.stack.stats.ipv6.unknownProtocolRcvdPackets).toBe(1);
  });

  it("answers an unknown Next Header after an extension header, pointing at that header", () => {
    expectParameterProblem(
      { headers: [optionsHeader(DST, [1, 0])], upper: 253, upperBytes: new Uint8Array(8) },
      1,
      40,
    );
  });

  it("delivers nothing for No Next Header and counts it", () => {
    const r = expectDropped({
      headers: [optionsHeader(DST, [1, 0])],
      upper: 59,
      upperBytes: new Uint8Array(0),
    });
    expect(r.t.stack.stats.ipv6.noNextHeaderReceived).toBe(1);
  });

  it("drops an extension chain longer than the packet as malformed", () => {
    const p = v6Chain({ headers: [optionsHeader(DST, [1, 0])] });
    // Claim a 64-byte header in a packet that ends before it.
    p[41] = 7;
    const t = testStack();
    t.link.inject(p);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("drops a packet that ends right after a Next Header value naming an extension", () => {
    const r = expectDropped({ upper: 60, upperBytes: new Uint8Array(0) });
    expect(r.t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("does not echo extension headers and keeps the traffic class", () => {
    const r = send({
      headers: [optionsHeader(HBH, [1, 0]), routingHeader(0, 0), optionsHeader(DST, [1, 0])],
      trafficClass: 0x28,
    });
    const ip = new IPv6Header(r.out!);
    expect(ip.nextHeader).toBe(58);
    expect(ip.payloadLength).toBe(24);
    expect(ip.trafficClass).toBe(0x28);
  });
});
