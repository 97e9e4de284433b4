/**
 * Which destinations the netstack answers and from which source (RFC 1122 §3.2.1.3, §3.3.6;
 * RFC 4291 §2.7; gVisor's receive path), plus the counting invariant: every received packet,
 * however malformed, lands in exactly one network-layer counter and nothing throws.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatAddress } from "../../../src/netstack/address.js";
import { IPv4Header } from "../../../src/netstack/header/ipv4.js";
import { IPv6Header } from "../../../src/netstack/header/ipv6.js";
import type { IPStats } from "../../../src/netstack/stats.js";
import { v6Chain } from "../../helpers/ip-packets.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

type T = ReturnType<typeof testStack>;

function reply(t: T, packet: Uint8Array): Uint8Array | null {
  t.link.inject(packet);
  const out = t.link.drain();
  expect(out.length).toBeLessThanOrEqual(1);
  return out[0] ?? null;
}

function v4Source(t: T, packet: Uint8Array): string | null {
  const r = reply(t, packet);
  return r === null ? null : formatAddress(new IPv4Header(r).sourceAddress);
}

function v6Source(t: T, packet: Uint8Array): string | null {
  const r = reply(t, packet);
  return r === null ? null : formatAddress(new IPv6Header(r).sourceAddress);
}

describe("IPv4 receive rules", () => {
  it("answers an Echo Request to 224.0.0.1 from the primary address", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ dst: "224.0.0.1" }))).toBe("198.18.0.2");
  });

  it("answers an Echo Request to the subnet broadcast from the primary address", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ dst: "198.18.0.255" }))).toBe("198.18.0.2");
  });

  it("answers an Echo Request to 255.255.255.255 from the primary address", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ dst: "255.255.255.255" }))).toBe("198.18.0.2");
  });

  it("drops a group it has not joined as an invalid destination", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ dst: "224.0.0.2" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidDestinationAddressesReceived).toBe(1);
  });

  it("drops a multicast source as invalid", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ src: "224.0.0.5" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidSourceAddressesReceived).toBe(1);
  });

  it("drops the limited broadcast as a source as invalid", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ src: "255.255.255.255" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidSourceAddressesReceived).toBe(1);
  });

  it("drops the subnet broadcast as a source as invalid", () => {
    const t = testStack();
    expect(v4Source(t, v4Echo({ src: "198.18.0.255" }))).toBeNull();
    expect(t.stack.stats.ipv4.invalidSourceAddressesReceived).toBe(1);
  });

  it("records the primary address, not the group, in a Record Route sent to 224.0.0.1", () => {
    const t = testStack();
    const r = reply(t, v4Echo({ dst: "224.0.0.1", options: Uint8Array.of(7, 7, 4, 0, 0, 0, 0) }));
    expect([...new IPv4Header(r!).options()]).toEqual([7, 7, 8, 198, 18, 0, 2, 0]);
  });
});

describe("IPv6 receive rules", () => {
  it("answers ff02::1 from fe80::2 for a link-local peer", () => {
    const t = testStack();
    expect(v6Source(t, v6Echo({ src: "fe80::1", dst: "ff02::1" }))).toBe("fe80::2");
  });

  it("answers ff02::1 from fd00:1::2 for a peer in fd00:1::/64", () => {
    const t = testStack();
    expect(v6Source(t, v6Echo({ src: "fd00:1::1", dst: "ff02::1" }))).toBe("fd00:1::2");
  });

  it("answers the solicited-node group of its addresses with source selection", () => {
    const t = testStack();
    expect(v6Source(t, v6Echo({ src: "fe80::1", dst: "ff02::1:ff00:2" }))).toBe("fe80::2");
  });

  it("drops a group it has not joined (ff02::2) as an invalid destination", () => {
    const t = testStack();
    expect(v6Source(t, v6Echo({ src: "fe80::1", dst: "ff02::2" }))).toBeNull();
    expect(t.stack.stats.ipv6.invalidDestinationAddressesReceived).toBe(1);
  });

  it("drops a multicast source as invalid", () => {
    const t = testStack();
    expect(v6Source(t, v6Echo({ src: "ff02::1" }))).toBeNull();
    expect(t.stack.stats.ipv6.invalidSourceAddressesReceived).toBe(1);
  });
});

/** The network-layer counters a received packet ends in: exactly one per packet. */
function dispositions(s: IPStats): number {
  return (
    s.malformedPacketsReceived +
    s.invalidSourceAddressesReceived +
    s.invalidDestinationAddressesReceived +
    s.fragmentsReceivedUnsupported +
    s.fragmentsQueued +
    s.preroutingDropped +
    s.inputDropped +
    s.unsupportedHeadersReceived +
    s.unknownProtocolRcvdPackets +
    s.noNextHeaderReceived +
    s.otherTransportPacketsReceived +
    s.packetsDelivered
  );
}

describe("every packet lands in exactly one counter, and nothing throws", () => {
  it("holds for random IPv4 option bytes on random protocols and destinations", () => {
    const t = testStack();
    t.stack.setTransportProtocolHandler(1, () => false);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.constantFrom(1, 1, 1, 6, 17, 99),
        fc.constantFrom(8, 8, 0, 3, 13),
        fc.constantFrom("198.18.0.2", "198.18.0.255", "224.0.0.1", "198.18.0.9"),
        (options, protocol, type, dst) => {
          const before = dispositions(t.stack.stats.ipv4);
          const p = v4Echo({ options, protocol, type, dst });
          expect(() => t.link.inject(p)).not.toThrow();
          t.link.drain();
          expect(dispositions(t.stack.stats.ipv4)).toBe(before + 1);
        },
      ),
      { numRuns: 2000 },
    );
    expect(dispositions(t.stack.stats.ipv4)).toBe(t.stack.stats.ipv4.packetsReceived);
  });

  it("holds for random IPv6 extension header chains", () => {
    const t = testStack();
    fc.assert(
      fc.property(
        fc.constantFrom(0, 0, 43, 44, 60, 60, 58, 59, 17, 51),
        fc.uint8Array({ minLength: 0, maxLength: 96 }),
        fc.constantFrom("fd00:1::2", "ff02::1", "fe80::2"),
        (first, bytes, dst) => {
          const before = dispositions(t.stack.stats.ipv6);
          const p = v6Chain({ dst, src: "fe80::1", upper: first, upperBytes: bytes });
          expect(() => t.link.inject(p)).not.toThrow();
          t.link.drain();
          expect(dispositions(t.stack.stats.ipv6)).toBe(before + 1);
        },
      ),
      { numRuns: 3000 },
    );
    expect(dispositions(t.stack.stats.ipv6)).toBe(t.stack.stats.ipv6.packetsReceived);
  });

  it("holds for random IPv6 chains built from plausible headers", () => {
    const t = testStack();
    const header = fc.record({
      id: fc.constantFrom(0, 43, 44, 60),
      len: fc.integer({ min: 0, max: 2 }),
      fill: fc.uint8Array({ minLength: 24, maxLength: 24 }),
    });
    fc.assert(
      fc.property(fc.array(header, { maxLength: 4 }), fc.constantFrom(58, 59, 17), (hs, upper) => {
        const headers = hs.map((h) => {
          const size = h.id === 44 ? 8 : (h.len + 1) * 8;
          const body = h.fill.slice(0, size - 1);
          if (h.id !== 44) body[0] = h.len;
          return { id: h.id, body };
        });
        const before = dispositions(t.stack.stats.ipv6);
        expect(() => t.link.inject(v6Chain({ headers, upper }))).not.toThrow();
        t.link.drain();
        expect(dispositions(t.stack.stats.ipv6)).toBe(before + 1);
      }),
      { numRuns: 3000 },
    );
  });
});
