import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import { ICMPv6Header } from "../../../src/netstack/header/icmpv6.js";
import { IPv6Header } from "../../../src/netstack/header/ipv6.js";
import { payloadOf, v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

function exchange(t: ReturnType<typeof testStack>, packet: Uint8Array) {
  t.link.inject(packet);
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  if (out.length === 0) return null;
  const bytes = out[0];
  const ip = new IPv6Header(bytes);
  const icmp = new ICMPv6Header(bytes, 40);
  return { bytes, ip, icmp };
}

describe("IPv6 built-in Echo Reply", () => {
  it("answers from the request's destination to the request's source", () => {
    const t = testStack();
    const r = exchange(t, v6Echo())!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("fd00:1::2");
    expect(formatAddress(r.ip.destinationAddress)).toBe("fd00:1::1");
    expect(r.ip.nextHeader).toBe(58);
    expect(r.ip.payloadLength).toBe(r.bytes.length - 40);
  });

  it("sets the hop limit to the stack default of 64, or the configured one", () => {
    expect(exchange(testStack(), v6Echo({ hopLimit: 3 }))!.ip.hopLimit).toBe(64);
    expect(exchange(testStack({ defaultTTL: 61 }), v6Echo())!.ip.hopLimit).toBe(61);
  });

  it("copies the traffic class but not the flow label", () => {
    const r = exchange(testStack(), v6Echo({ trafficClass: 0x28, flowLabel: 0xabcde }))!;
    expect(r.ip.trafficClass).toBe(0x28);
    expect(r.ip.flowLabel).toBe(0);
  });

  it("answers with type 129 and the request's code, ident, sequence and payload", () => {
    const payload = payloadOf(1400, 0xa5);
    const r = exchange(testStack(), v6Echo({ code: 7, ident: 0x1357, sequence: 0x2468, payload }))!;
    expect(r.icmp.type).toBe(129);
    expect(r.icmp.code).toBe(7);
    expect(r.icmp.ident).toBe(0x1357);
    expect(r.icmp.sequence).toBe(0x2468);
    expect([...r.icmp.payload()]).toEqual([...payload]);
  });

  it("computes the ICMPv6 checksum over the pseudo-header", () => {
    const r = exchange(testStack(), v6Echo())!;
    expect(r.icmp.isChecksumValid(r.ip.sourceAddress, r.ip.destinationAddress)).toBe(true);
  });

  it("answers a link-local request from the link-local address", () => {
    const r = exchange(testStack(), v6Echo({ src: "fe80::1", dst: "fe80::2" }))!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("fe80::2");
    expect(formatAddress(r.ip.destinationAddress)).toBe("fe80::1");
  });

  it("answers ff02::1 with a source chosen by source-address selection", () => {
    const global = exchange(testStack(), v6Echo({ dst: "ff02::1" }))!;
    expect(formatAddress(global.ip.sourceAddress)).toBe("fd00:1::2");
    const linkLocal = exchange(testStack(), v6Echo({ src: "fe80::1", dst: "ff02::1" }))!;
    expect(formatAddress(linkLocal.ip.sourceAddress)).toBe("fe80::2");
  });

  it("answers its solicited-node multicast address", () => {
    const r = exchange(testStack(), v6Echo({ dst: "ff02::1:ff00:2" }))!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("fd00:1::2");
  });

  it("drops an Echo Request with a bad checksum and counts it invalid", () => {
    const t = testStack();
    const p = v6Echo();
    p[40 + 2] ^= 0xff;
    expect(exchange(t, p)).toBeNull();
    expect(t.stack.stats.icmp.v6.packetsReceived.invalid).toBe(1);
    expect(t.stack.stats.icmp.v6.packetsReceived.echoRequest).toBe(0);
  });

  it("drops a packet from a multicast source", () => {
    const t = testStack();
    expect(exchange(t, v6Echo({ src: "ff02::1" }))).toBeNull();
    expect(t.stack.stats.ipv6.invalidSourceAddressesReceived).toBe(1);
  });

  it("drops a destination it does not own as an invalid destination", () => {
    const t = testStack();
    expect(exchange(t, v6Echo({ dst: "fd00:1::9" }))).toBeNull();
    expect(t.stack.stats.ipv6.invalidDestinationAddressesReceived).toBe(1);
  });

  it("counts the kernel's router solicitations to ff02::2 and drops them quietly", () => {
    const t = testStack();
    expect(exchange(t, v6Echo({ src: "fe80::1", dst: "ff02::2", type: 133 }))).toBeNull();
    expect(t.stack.stats.ipv6.invalidDestinationAddressesReceived).toBe(1);
  });

  it("counts a router solicitation to a joined group by type and sends nothing", () => {
    const t = testStack();
    expect(exchange(t, v6Echo({ src: "fe80::1", dst: "ff02::1", type: 133 }))).toBeNull();
    expect(t.stack.stats.icmp.v6.packetsReceived.routerSolicit).toBe(1);
  });

  it("answers a Next Header it does not know with Parameter Problem code 1 at offset 6", () => {
    const t = testStack();
    t.link.inject(v6Echo({ nextHeader: 17 }));
    const [out] = t.link.drain();
    expect([out[40], out[41], out[47]]).toEqual([4, 1, 6]);
    expect(t.stack.stats.ipv6.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.icmp.v6.packetsSent.paramProblem).toBe(1);
  });

  it.each([
    [
      "a wrong version",
      (p: Uint8Array) => {
        p[0] = 0x40 | (p[0] & 0x0f);
      },
    ],
    [
      "a payload length beyond the buffer",
      (p: Uint8Array) => {
        new IPv6Header(p).payloadLength = p.length;
      },
    ],
  ])("drops a packet with %s as malformed", (_n, mutate) => {
    const t = testStack();
    const p = v6Echo();
    mutate(p);
    expect(exchange(t, p)).toBeNull();
    const s = t.stack.stats;
    expect(s.ipv6.malformedPacketsReceived + s.ipv4.malformedPacketsReceived).toBe(1);
  });

  it("drops a packet shorter than the fixed header as malformed", () => {
    const t = testStack();
    expect(exchange(t, v6Echo().slice(0, 39))).toBeNull();
    expect(t.stack.stats.ipv6.malformedPacketsReceived).toBe(1);
  });

  it("sends nothing when there is no route back", () => {
    const t = testStack({ routes: false });
    expect(exchange(t, v6Echo())).toBeNull();
    expect(t.stack.stats.icmp.v6.packetsReceived.echoRequest).toBe(1);
    expect(t.stack.stats.icmp.v6.packetsSent.echoReply).toBe(0);
    expect(t.stack.stats.icmp.v6.packetsSent.noRoute).toBe(1);
  });

  it("does not rate limit Echo Replies by default (type 129 is outside the default mask)", () => {
    const t = testStack();
    for (let i = 0; i < 200; i++) t.link.inject(v6Echo({ sequence: i }));
    expect(t.link.drain().length).toBe(200);
  });

  it("shares one token bucket between IPv4 and IPv6", () => {
    const t = testStack({ icmpv4RateLimitedTypes: [0], icmpv6RateLimitedTypes: [129] });
    for (let i = 0; i < 30; i++) t.link.inject(v4Echo({ sequence: i }));
    for (let i = 0; i < 30; i++) t.link.inject(v6Echo({ sequence: i }));
    expect(t.link.drain().length).toBe(50);
    expect(t.stack.stats.icmp.v4.packetsSent.rateLimited).toBe(0);
    expect(t.stack.stats.icmp.v6.packetsSent.rateLimited).toBe(10);
  });

  it("counts an unknown version nibble at the link", () => {
    const t = testStack();
    t.link.inject(Uint8Array.of(0x70, 0, 0, 0), new Uint8Array(0));
    expect(t.stack.stats.nic.unknownL3ProtocolRcvdPackets).toBe(2);
  });
});
