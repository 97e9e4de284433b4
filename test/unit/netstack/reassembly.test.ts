/**
 * Fragment reassembly (gVisor's network/internal/fragmentation with ipv4/ipv6 handleFragments):
 * order, duplicates, overlaps (RFC 5722), the maximum datagram size, the timeout on the stack
 * clock, memory thresholds with eviction of the oldest; every malformed fragment is counted and
 * dropped, never thrown.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FRAGMENT_OVERHEAD_BYTES,
  Reassembler,
} from "../../../src/netstack/fragmentation/reassembler.js";
import { IPV4_FLAG_DF, IPv4Header } from "../../../src/netstack/header/ipv4.js";
import type { IPStats } from "../../../src/netstack/stats.js";
import { evenPieces, fragmentV4, fragmentV6 } from "../../helpers/fragments.js";
import { parseICMPv4Error, parseICMPv6Error, v4Datagram } from "../../helpers/ip-packets.js";
import { payloadOf, v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

/** A 1000-byte Echo Request (8 + 972 payload + 20) split into 8-byte-aligned pieces. */
const bigV4 = () => v4Echo({ payload: payloadOf(972), flags: 0, id: 0x7777 });
const bigV6 = () => v6Echo({ payload: payloadOf(952) });
/** The same size as UDP (protocol 17): errors about an ICMP datagram's fragments are not sent. */
const bigUdpV4 = () => v4Datagram({ protocol: 17, payload: payloadOf(980), flags: 0 });

function v4Reply(out: Uint8Array[]) {
  expect(out.length).toBe(1);
  const h = new IPv4Header(out[0]);
  return { h, msg: out[0].subarray(h.ihl) };
}

describe("IPv4 reassembly", () => {
  it("answers a request that arrives in order, in fragments", () => {
    const t = testStack();
    const frags = fragmentV4(bigV4(), evenPieces(980, 400));
    expect(frags.length).toBe(3);
    t.link.inject(...frags);
    const { h, msg } = v4Reply(t.link.drain());
    expect(msg[0]).toBe(0);
    expect(msg.length).toBe(980);
    expect([...msg.subarray(8)]).toEqual([...payloadOf(972)]);
    expect(h.id).toBe(0x7777);
    const s = t.stack.stats.ipv4;
    expect(s.fragmentsReceived).toBe(3);
    expect(s.fragmentsQueued).toBe(2);
    expect(s.packetsReassembled).toBe(1);
    expect(s.packetsDelivered).toBe(1);
    expect(s.reassemblyBytes).toBe(0);
    expect(s.reassemblyPending).toBe(0);
  });

  it("answers a request whose fragments arrive out of order", () => {
    const t = testStack();
    const [a, b, c] = fragmentV4(bigV4(), evenPieces(980, 400));
    t.link.inject(c, a, b);
    expect(v4Reply(t.link.drain()).msg.length).toBe(980);
    expect(t.stack.stats.ipv4.packetsReassembled).toBe(1);
  });

  it("ignores a duplicate fragment", () => {
    const t = testStack();
    const [a, b, c] = fragmentV4(bigV4(), evenPieces(980, 400));
    t.link.inject(a, a, b, c);
    expect(v4Reply(t.link.drain()).msg.length).toBe(980);
    const s = t.stack.stats.ipv4;
    expect(s.fragmentsQueued).toBe(3);
    expect(s.malformedPacketsReceived).toBe(0);
  });

  it("drops the whole datagram when fragments overlap", () => {
    const t = testStack();
    const frags = fragmentV4(bigV4(), [
      { offset: 0, length: 400 },
      { offset: 392, length: 400 },
      { offset: 792 },
    ]);
    t.link.inject(...frags);
    expect(t.link.drain()).toEqual([]);
    const s = t.stack.stats.ipv4;
    expect(s.reassemblyOverlaps).toBe(1);
    expect(s.malformedPacketsReceived).toBe(1);
    expect(s.malformedFragmentsReceived).toBe(1);
    // The third fragment starts a new reassembly, which never completes.
    expect(s.fragmentsQueued).toBe(2);
    expect(s.reassemblyPending).toBe(1);
  });

  it("reassembles a tiny first fragment", () => {
    const t = testStack();
    const frags = fragmentV4(bigV4(), [{ offset: 0, length: 8 }, { offset: 8 }]);
    t.link.inject(frags[1], frags[0]);
    expect(v4Reply(t.link.drain()).msg.length).toBe(980);
  });

  it("clears DF and the offset on the reassembled datagram (gVisor's SetFlagsFragmentOffset(0, 0))", () => {
    const t = testStack();
    const frags = fragmentV4(bigV4(), evenPieces(980, 496));
    for (const f of frags) {
      const h = new IPv4Header(f);
      h.flags |= IPV4_FLAG_DF;
      h.checksum = 0;
      h.checksum = h.calculateChecksum();
    }
    t.link.inject(...frags);
    expect(v4Reply(t.link.drain()).h.dontFragment).toBe(false);
  });

  it("keys fragments by source, destination, ID and protocol", () => {
    const t = testStack();
    const [a1, b1] = fragmentV4(bigV4(), evenPieces(980, 496), 1);
    const [a2, b2] = fragmentV4(bigV4(), evenPieces(980, 496), 2);
    t.link.inject(a1, a2, b2, b1);
    expect(t.link.drain().length).toBe(2);
    expect(t.stack.stats.ipv4.packetsReassembled).toBe(2);
  });

  it("drops an empty fragment as malformed", () => {
    const t = testStack();
    const f = fragmentV4(bigV4(), [{ offset: 0, length: 0, more: true }]);
    t.link.inject(...f);
    const s = t.stack.stats.ipv4;
    expect(s.malformedPacketsReceived).toBe(1);
    expect(s.malformedFragmentsReceived).toBe(1);
  });

  it("drops a non-final fragment whose length is not a multiple of 8", () => {
    const t = testStack();
    const f = fragmentV4(bigV4(), [{ offset: 0, length: 12 }]);
    t.link.inject(...f);
    expect(t.stack.stats.ipv4.malformedFragmentsReceived).toBe(1);
    expect(t.stack.stats.ipv4.reassemblyPending).toBe(0);
  });

  it("drops a fragment past the maximum datagram size (65535)", () => {
    const t = testStack();
    const f = fragmentV4(bigV4(), [{ offset: 65512, length: 8, more: false }]);
    t.link.inject(...f);
    expect(t.stack.stats.ipv4.malformedFragmentsReceived).toBe(1);
  });

  it("drops a fragment past the configured maximum datagram size", () => {
    const t = testStack({ maxReassembledDatagramSize: 600 });
    t.link.inject(...fragmentV4(bigV4(), evenPieces(980, 400)));
    expect(t.link.drain()).toEqual([]);
    // 20 + 400 + 400 > 600 and 20 + 800 + 180 > 600: only the first is kept.
    expect(t.stack.stats.ipv4.malformedFragmentsReceived).toBe(2);
    expect(t.stack.stats.ipv4.fragmentsQueued).toBe(1);
  });

  it("drops a second final fragment that ends elsewhere (conflict)", () => {
    const t = testStack();
    const frags = fragmentV4(bigV4(), [
      { offset: 0, length: 400 },
      { offset: 400, length: 400, more: false },
      { offset: 400, length: 408, more: false },
    ]);
    t.link.inject(frags[1], frags[2]);
    expect(t.stack.stats.ipv4.malformedFragmentsReceived).toBe(1);
    expect(t.stack.stats.ipv4.reassemblyPending).toBe(0);
  });

  it("releases a datagram missing its last fragment after the timeout and counts it", () => {
    const t = testStack();
    const [a, b] = fragmentV4(bigV4(), evenPieces(980, 400));
    t.link.inject(a, b);
    const s = t.stack.stats.ipv4;
    expect(s.reassemblyBytes).toBe(
      a.length + FRAGMENT_OVERHEAD_BYTES + 400 + FRAGMENT_OVERHEAD_BYTES,
    );
    t.clock.advance(29_999);
    expect(t.stack.sweepFragments()).toBe(0);
    t.clock.advance(1);
    expect(t.stack.sweepFragments()).toBe(1);
    expect(s.reassemblyTimeouts).toBe(1);
    expect(s.reassemblyBytes).toBe(0);
    expect(s.reassemblyPending).toBe(0);
  });

  it("answers a timed-out non-ICMP datagram whose first fragment came with Time Exceeded code 1", () => {
    const t = testStack();
    const [a] = fragmentV4(bigUdpV4(), evenPieces(980, 400));
    t.link.inject(a);
    t.clock.advance(30_000);
    t.stack.sweepFragments();
    const out = t.link.drain();
    expect(out.length).toBe(1);
    const e = parseICMPv4Error(out[0]);
    expect(e.type).toBe(11);
    expect(e.code).toBe(1);
    expect(e.checksumOk).toBe(true);
    expect([...e.quoted.subarray(0, 28)]).toEqual([...a.subarray(0, 28)]);
    expect(t.stack.stats.icmp.v4.packetsSent.timeExceeded).toBe(1);
  });

  it("sends nothing for a timed-out datagram without its first fragment", () => {
    const t = testStack();
    const [, b] = fragmentV4(bigV4(), evenPieces(980, 400));
    t.link.inject(b);
    t.clock.advance(30_000);
    t.stack.sweepFragments();
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.reassemblyTimeouts).toBe(1);
  });

  it("expires old datagrams lazily when a fragment arrives", () => {
    const t = testStack();
    const [, b] = fragmentV4(bigV4(), evenPieces(980, 400), 1);
    t.link.inject(b);
    t.clock.advance(30_000);
    const [a2] = fragmentV4(bigV4(), evenPieces(980, 400), 2);
    t.link.inject(a2);
    expect(t.stack.stats.ipv4.reassemblyTimeouts).toBe(1);
    expect(t.stack.stats.ipv4.reassemblyPending).toBe(1);
  });

  it("honours a configured reassembly timeout", () => {
    const t = testStack({ ipv4ReassemblyTimeoutMs: 5000 });
    t.link.inject(fragmentV4(bigV4(), evenPieces(980, 400))[1]);
    t.clock.advance(5000);
    expect(t.stack.sweepFragments()).toBe(1);
  });

  it("evicts the oldest datagrams above the high threshold down to the low threshold", () => {
    const cost = 400 + FRAGMENT_OVERHEAD_BYTES;
    const t = testStack({ reassemblyHighThreshold: cost * 4, reassemblyLowThreshold: cost * 2 });
    for (let id = 1; id <= 4; id++) {
      t.link.inject(fragmentV4(bigV4(), evenPieces(980, 400), id)[1]);
    }
    const s = t.stack.stats.ipv4;
    expect(s.reassemblyPending).toBe(4);
    expect(s.reassemblyEvictions).toBe(0);
    t.link.inject(fragmentV4(bigV4(), evenPieces(980, 400), 5)[1]);
    expect(s.reassemblyEvictions).toBe(3);
    expect(s.reassemblyPending).toBe(2);
    expect(s.reassemblyBytes).toBe(cost * 2);
    // The newest two survive: ID 4 completes.
    const [a4, , c4] = fragmentV4(bigV4(), evenPieces(980, 400), 4);
    t.link.inject(a4, c4);
    expect(t.link.drain().length).toBe(1);
  });

  it("keeps memory under the high threshold for more fragments than the limit holds", () => {
    const high = 64 * 1024;
    const t = testStack({ reassemblyHighThreshold: high, reassemblyLowThreshold: high / 2 });
    for (let id = 0; id < 2000; id++) {
      t.link.inject(fragmentV4(bigV4(), evenPieces(980, 400), id)[1]);
      expect(t.stack.stats.ipv4.reassemblyBytes).toBeLessThanOrEqual(high);
    }
    expect(t.stack.stats.ipv4.fragmentsQueued).toBe(2000);
    expect(t.stack.stats.ipv4.reassemblyEvictions).toBeGreaterThan(0);
  });

  it("checks a fragment's options and answers a bad one with Parameter Problem (first fragment of a non-ICMP datagram)", () => {
    const t = testStack();
    const bad = v4Datagram({
      protocol: 17,
      payload: payloadOf(980),
      flags: 0,
      options: new Uint8Array([68, 3, 5, 0]),
    });
    const [a] = fragmentV4(bad, evenPieces(980, 400));
    t.link.inject(a);
    const out = t.link.drain();
    expect(out.length).toBe(1);
    expect(parseICMPv4Error(out[0]).type).toBe(12);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
    expect(t.stack.stats.ipv4.reassemblyPending).toBe(0);
  });
});

describe("IPv6 reassembly (RFC 8200 §4.5)", () => {
  it("answers a request that arrives in fragments", () => {
    const t = testStack();
    const frags = fragmentV6(bigV6(), evenPieces(960, 400));
    t.link.inject(frags[2], frags[0], frags[1]);
    const out = t.link.drain();
    expect(out.length).toBe(1);
    expect(out[0][6]).toBe(58);
    expect(out[0].length).toBe(40 + 960);
    expect(out[0][40]).toBe(129);
    const s = t.stack.stats.ipv6;
    expect(s.fragmentsReceived).toBe(3);
    expect(s.fragmentsQueued).toBe(2);
    expect(s.packetsReassembled).toBe(1);
    expect(s.packetsDelivered).toBe(1);
  });

  it("drops the whole packet when fragments overlap (RFC 5722)", () => {
    const t = testStack();
    const frags = fragmentV6(bigV6(), [
      { offset: 0, length: 400 },
      { offset: 392, length: 400 },
      { offset: 800 },
    ]);
    t.link.inject(frags[0], frags[1]);
    expect(t.stack.stats.ipv6.reassemblyOverlaps).toBe(1);
    expect(t.stack.stats.ipv6.malformedFragmentsReceived).toBe(1);
    expect(t.stack.stats.ipv6.reassemblyPending).toBe(0);
    expect(t.link.drain()).toEqual([]);
  });

  it("ignores the protocol of later fragments: the first fragment's Next Header wins", () => {
    const t = testStack();
    const frags = fragmentV6(bigV6(), evenPieces(960, 480));
    frags[1][40] = 17;
    t.link.inject(...frags);
    expect(t.link.drain().length).toBe(1);
  });

  it("answers a non-final fragment not a multiple of 8 with Parameter Problem at the Payload Length", () => {
    const t = testStack();
    const [f] = fragmentV6(bigV6(), [{ offset: 0, length: 100, more: true }]);
    t.link.inject(f);
    const out = t.link.drain();
    expect(out.length).toBe(1);
    const e = parseICMPv6Error(out[0]);
    expect([e.type, e.code, e.pointer]).toEqual([4, 0, 4]);
    expect(t.stack.stats.ipv6.malformedFragmentsReceived).toBe(1);
  });

  it("answers a fragment past 65535 bytes with Parameter Problem at the Fragment Offset", () => {
    const t = testStack();
    const [, f] = fragmentV6(bigV6(), [{ offset: 0 }, { offset: 65528, length: 16, more: false }]);
    t.link.inject(f);
    const e = parseICMPv6Error(t.link.drain()[0]);
    expect([e.type, e.code, e.pointer]).toEqual([4, 0, 42]);
  });

  it("drops a first fragment whose header chain does not reach the upper layer", () => {
    const t = testStack();
    const frags = fragmentV6(v6Echo({ payload: payloadOf(952), nextHeader: 60 }), [
      { offset: 0, length: 0, more: true },
    ]);
    t.link.inject(...frags);
    expect(t.stack.stats.ipv6.malformedFragmentsReceived).toBe(1);
  });

  it("processes an atomic fragment outside reassembly", () => {
    const t = testStack();
    const [f] = fragmentV6(bigV6(), [{ offset: 0 }]);
    t.link.inject(f);
    expect(t.link.drain().length).toBe(1);
    expect(t.stack.stats.ipv6.fragmentsReceived).toBe(0);
  });

  it("times out after 60 s and answers with Time Exceeded code 1", () => {
    const t = testStack();
    t.link.inject(fragmentV6(bigV6(), evenPieces(960, 400))[0]);
    t.clock.advance(59_999);
    expect(t.stack.sweepFragments()).toBe(0);
    t.clock.advance(1);
    expect(t.stack.sweepFragments()).toBe(1);
    const e = parseICMPv6Error(t.link.drain()[0]);
    expect([e.type, e.code]).toEqual([3, 1]);
    expect(t.stack.stats.ipv6.reassemblyTimeouts).toBe(1);
    expect(t.stack.stats.ipv6.reassemblyBytes).toBe(0);
  });
});

describe("malformed fragments are counted and dropped, never thrown", () => {
  const dispositions = (s: IPStats) =>
    s.malformedPacketsReceived +
    s.invalidSourceAddressesReceived +
    s.invalidDestinationAddressesReceived +
    s.fragmentsQueued +
    s.unsupportedHeadersReceived +
    s.unknownProtocolRcvdPackets +
    s.noNextHeaderReceived +
    s.otherTransportPacketsReceived +
    s.packetsDelivered;

  it("holds for random IPv4 fragments", () => {
    const t = testStack({ reassemblyHighThreshold: 32 * 1024 });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8191 }),
        fc.integer({ min: 0, max: 1500 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 3 }),
        (units, length, more, id) => {
          const before = dispositions(t.stack.stats.ipv4);
          const [f] = fragmentV4(
            v4Echo({ payload: payloadOf(1600), flags: 0 }),
            [{ offset: units * 8, length: Math.min(length, 1608), more }],
            id,
          );
          expect(() => t.link.inject(f)).not.toThrow();
          t.link.drain();
          expect(dispositions(t.stack.stats.ipv4)).toBe(before + 1);
          expect(t.stack.stats.ipv4.reassemblyBytes).toBeLessThanOrEqual(32 * 1024);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("holds for random IPv6 fragments", () => {
    const t = testStack({ reassemblyHighThreshold: 32 * 1024 });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8191 }),
        fc.integer({ min: 0, max: 1400 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 3 }),
        (units, length, more, id) => {
          const before = dispositions(t.stack.stats.ipv6);
          const [f] = fragmentV6(
            v6Echo({ payload: payloadOf(1400) }),
            [{ offset: units * 8, length: Math.min(length, 1408), more }],
            id,
          );
          expect(() => t.link.inject(f)).not.toThrow();
          t.link.drain();
          expect(dispositions(t.stack.stats.ipv6)).toBe(before + 1);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("the reassembler rejects invalid input as a value", () => {
    const stats = {
      reassemblyBytes: 0,
      reassemblyPending: 0,
      reassemblyTimeouts: 0,
      reassemblyEvictions: 0,
      reassemblyOverlaps: 0,
    };
    const r = new Reassembler<null>(
      { timeoutMs: 1000, highThreshold: 1e6, lowThreshold: 1e5 },
      stats,
    );
    const d = new Uint8Array(8);
    expect(
      r.process("k", { offset: 3, data: d, more: true, protocol: 1, first: null }, 0).kind,
    ).toBe("error");
    expect(
      r.process(
        "k",
        { offset: 0, data: d.subarray(0, 0), more: false, protocol: 1, first: null },
        0,
      ).kind,
    ).toBe("error");
    expect(r.pending).toBe(0);
  });
});
