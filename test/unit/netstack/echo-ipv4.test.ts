import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import { IPV4_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { checksum } from "../../../src/netstack/header/checksum.js";
import { ICMPv4Header } from "../../../src/netstack/header/icmpv4.js";
import { IPV4_FLAG_DF, IPv4Header } from "../../../src/netstack/header/ipv4.js";
import { flattenStats } from "../../../src/netstack/stats.js";
import { payloadOf, v4Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

/** Injects one packet and returns what the stack wrote back (parsed), or null. */
function exchange(t: ReturnType<typeof testStack>, packet: Uint8Array) {
  t.link.inject(packet);
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  if (out.length === 0) return null;
  const bytes = out[0];
  const ip = new IPv4Header(bytes);
  const icmp = new ICMPv4Header(bytes, ip.ihl);
  return { bytes, ip, icmp };
}

describe("IPv4 built-in Echo Reply", () => {
  it("answers from the request's destination to the request's source", () => {
    const t = testStack();
    const r = exchange(t, v4Echo({ src: "198.18.0.1", dst: "198.18.0.2" }));
    expect(r).not.toBeNull();
    expect(formatAddress(r!.ip.sourceAddress)).toBe("198.18.0.2");
    expect(formatAddress(r!.ip.destinationAddress)).toBe("198.18.0.1");
  });

  it("sets the TTL to the stack default of 64, not the request's", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ ttl: 17 }))!.ip.ttl).toBe(64);
  });

  it("sets the TTL to a configured default TTL", () => {
    const t = testStack({ defaultTTL: 61 });
    expect(exchange(t, v4Echo())!.ip.ttl).toBe(61);
  });

  it("copies TOS, IP ID and DF from the request", () => {
    const t = testStack();
    const r = exchange(t, v4Echo({ tos: 0x28, id: 0xbeef, flags: IPV4_FLAG_DF }))!;
    expect(r.ip.tos).toBe(0x28);
    expect(r.ip.id).toBe(0xbeef);
    expect(r.ip.flags).toBe(IPV4_FLAG_DF);
    const noDf = exchange(t, v4Echo({ id: 0x0102, flags: 0 }))!;
    expect(noDf.ip.flags).toBe(0);
    expect(noDf.ip.id).toBe(0x0102);
  });

  it("copies IP ID 0 even on a non-atomic reply (gVisor's sendICMPEchoReply writes with writePacket)", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ id: 0, flags: 0 }))!.ip.id).toBe(0);
    expect(exchange(t, v4Echo({ id: 0, flags: IPV4_FLAG_DF }))!.ip.id).toBe(0);
  });

  it("answers with type 0 and the request's code, ident, sequence and payload", () => {
    const t = testStack();
    const payload = payloadOf(100, 0xa5);
    const r = exchange(t, v4Echo({ code: 3, ident: 0x1357, sequence: 0x2468, payload }))!;
    expect(r.icmp.type).toBe(0);
    expect(r.icmp.code).toBe(3);
    expect(r.icmp.ident).toBe(0x1357);
    expect(r.icmp.sequence).toBe(0x2468);
    expect([...r.icmp.payload()]).toEqual([...payload]);
  });

  it("recomputes both checksums", () => {
    const t = testStack();
    const r = exchange(t, v4Echo())!;
    expect(r.ip.isChecksumValid()).toBe(true);
    expect(checksum(r.bytes.subarray(r.ip.ihl))).toBe(0xffff);
    expect(r.ip.totalLength).toBe(r.bytes.length);
    expect(r.ip.ihl).toBe(20);
  });

  it("answers requests with TTL 0 and TTL 1", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ ttl: 0 }))).not.toBeNull();
    expect(exchange(t, v4Echo({ ttl: 1 }))).not.toBeNull();
  });

  it("answers the subnet broadcast from the NIC's primary address", () => {
    const t = testStack();
    const r = exchange(t, v4Echo({ dst: "198.18.0.255" }))!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("198.18.0.2");
  });

  it("answers the limited broadcast from the NIC's primary address", () => {
    const t = testStack();
    const r = exchange(t, v4Echo({ dst: "255.255.255.255" }))!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("198.18.0.2");
  });

  it("answers 224.0.0.1 (all systems) from the NIC's primary address", () => {
    const t = testStack();
    const r = exchange(t, v4Echo({ dst: "224.0.0.1" }))!;
    expect(formatAddress(r.ip.sourceAddress)).toBe("198.18.0.2");
  });

  it("drops a multicast group it has not joined as an invalid destination", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ dst: "224.0.0.5" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidDestinationAddressesReceived).toBe(1);
  });

  it("drops a destination it does not own as an invalid destination", () => {
    const t = testStack();
    expect(exchange(t, v4Echo({ dst: "198.18.0.9" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidDestinationAddressesReceived).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsReceived.echoRequest).toBe(0);
  });

  it.each([["255.255.255.255"], ["198.18.0.255"], ["224.0.0.1"]])(
    "drops a packet from broadcast or multicast source %s",
    (src) => {
      const t = testStack();
      expect(exchange(t, v4Echo({ src }))).toBeNull();
      expect(t.stack.stats.ipv4.invalidSourceAddressesReceived).toBe(1);
    },
  );

  it("drops an Echo Request with a bad ICMP checksum and counts it invalid", () => {
    const t = testStack();
    const p = v4Echo();
    p[20 + 2] ^= 0xff;
    expect(exchange(t, p)).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsReceived.invalid).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsReceived.echoRequest).toBe(0);
  });

  it("drops ICMP shorter than 8 bytes and counts it invalid", () => {
    const t = testStack();
    const p = v4Echo({ payload: new Uint8Array(0) }).slice(0, 24);
    const ip = new IPv4Header(p);
    ip.totalLength = 24;
    ip.checksum = 0;
    ip.checksum = ip.calculateChecksum();
    expect(exchange(t, p)).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsReceived.invalid).toBe(1);
  });

  it.each([
    [
      "a wrong version",
      (p: Uint8Array) => {
        p[0] = 0x55;
      },
    ],
    [
      "an IHL below 5",
      (p: Uint8Array) => {
        p[0] = 0x44;
      },
    ],
    [
      "a total length beyond the buffer",
      (p: Uint8Array) => {
        new IPv4Header(p).totalLength = p.length + 1;
      },
    ],
    [
      "a total length below the header length",
      (p: Uint8Array) => {
        new IPv4Header(p).totalLength = 19;
      },
    ],
    [
      "a bad header checksum",
      (p: Uint8Array) => {
        p[10] ^= 0x01;
      },
    ],
  ])("drops a packet with %s as malformed", (_name, mutate) => {
    const t = testStack();
    const p = v4Echo();
    mutate(p);
    if (_name !== "a bad header checksum") {
      const ip = new IPv4Header(p);
      ip.checksum = 0;
      ip.checksum = ~checksum(p, 0, 0, 20) & 0xffff;
    }
    expect(exchange(t, p)).toBeNull();
    const s = t.stack.stats;
    expect(s.ipv4.malformedPacketsReceived + s.nic.unknownL3ProtocolRcvdPackets).toBe(1);
  });

  it("drops a packet shorter than an IPv4 header as malformed", () => {
    const t = testStack();
    expect(exchange(t, v4Echo().slice(0, 19))).toBeNull();
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
  });

  it("ignores link padding after the total length", () => {
    const t = testStack();
    const p = v4Echo({ payload: payloadOf(8) });
    const padded = new Uint8Array(p.length + 6);
    padded.set(p);
    const r = exchange(t, padded)!;
    expect(r.bytes.length).toBe(p.length);
  });

  it("sends nothing when there is no route back", () => {
    const t = testStack({ routes: false });
    expect(exchange(t, v4Echo())).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsReceived.echoRequest).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.dropped).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.noRoute).toBe(1);
  });

  it("does not rate limit Echo Replies by default", () => {
    const t = testStack();
    for (let i = 0; i < 200; i++) t.link.inject(v4Echo({ sequence: i }));
    expect(t.link.drain().length).toBe(200);
    expect(t.stack.stats.icmp.v4.packetsSent.rateLimited).toBe(0);
  });

  it("rate limits Echo Replies when type 0 is in the mask: burst 50, then 1000/s", () => {
    const t = testStack({ icmpv4RateLimitedTypes: [0] });
    for (let i = 0; i < 60; i++) t.link.inject(v4Echo({ sequence: i }));
    expect(t.link.drain().length).toBe(50);
    expect(t.stack.stats.icmp.v4.packetsSent.rateLimited).toBe(10);
    t.clock.advance(5); // 5 ms at 1000/s = 5 tokens
    for (let i = 0; i < 10; i++) t.link.inject(v4Echo({ sequence: i }));
    expect(t.link.drain().length).toBe(5);
    expect(t.stack.stats.icmp.v4.packetsSent.rateLimited).toBe(15);
  });

  it("counts the exchange under gVisor's counter names", () => {
    const t = testStack();
    for (let i = 0; i < 3; i++) t.link.inject(v4Echo({ sequence: i }));
    const s = flattenStats(t.stack.stats);
    expect(s["ipv4.packetsReceived"]).toBe(3);
    expect(s["ipv4.packetsDelivered"]).toBe(3);
    expect(s["ipv4.packetsSent"]).toBe(3);
    expect(s["icmp.v4.packetsReceived.echoRequest"]).toBe(3);
    expect(s["icmp.v4.packetsSent.echoReply"]).toBe(3);
    expect(s["nic.packetsReceived"]).toBe(3);
    expect(s["nic.packetsSent"]).toBe(3);
  });

  it("counts a failed link write as dropped", () => {
    const t = testStack();
    t.link.close();
    // Re-attach a fresh dispatcher path: a closed channel refuses writes.
    const nic = t.stack.nic(1)!;
    nic.deliverNetworkPackets([v4Echo()]);
    expect(t.stack.stats.icmp.v4.packetsSent.dropped).toBe(1);
    expect(t.stack.stats.nic.txErrors).toBe(1);
  });

  it("counts other ICMP types by type and answers none of them", () => {
    const t = testStack();
    for (const [type, name] of [
      [0, "echoReply"],
      [3, "dstUnreachable"],
      [11, "timeExceeded"],
      [13, "timestamp"],
    ] as const) {
      expect(exchange(t, v4Echo({ type }))).toBeNull();
      const rcv = t.stack.stats.icmp.v4.packetsReceived as unknown as Record<string, number>;
      expect(rcv[name]).toBe(1);
    }
    expect(exchange(t, v4Echo({ type: 42 }))).toBeNull();
    expect(t.stack.stats.icmp.v4.packetsReceived.invalid).toBe(1);
  });

  it("answers a transport protocol other than ICMP with protocol unreachable", () => {
    const t = testStack();
    t.link.inject(v4Echo({ protocol: 17 }));
    const [out] = t.link.drain();
    const icmp = new ICMPv4Header(out, new IPv4Header(out).ihl);
    expect([icmp.type, icmp.code]).toEqual([3, 2]);
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.dstUnreachable).toBe(1);
  });

  it("looks the route up on the receiving NIC only", () => {
    const t = testStack();
    const route = t.stack.findRoute(2, null, v4Echo().subarray(12, 16), IPV4_PROTOCOL_NUMBER);
    expect("kind" in route && route.kind).toBe("noRoute");
  });
});
