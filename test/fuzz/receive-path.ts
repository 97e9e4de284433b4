/**
 * Fuzzing the whole receive path (link → NIC → IPv4/IPv6 → fragments → ICMP → Forwarder):
 * random bytes and mutated valid packets. Shared by the `npm test` property (10⁴ cases) and
 * `npm run fuzz` (10⁶ cases, rate and counter histogram).
 *
 * The invariant: nothing throws, and each packet ends in exactly one link- or network-layer
 * disposition; each packet delivered to ICMP ends in exactly one ICMP receive counter.
 */
import fc from "fast-check";
import { ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "../../src/netstack/buffer.js";
import { Forwarder } from "../../src/netstack/icmp/forwarder.js";
import type { IPStats, Stats } from "../../src/netstack/stats.js";
import { evenPieces, fragmentV4, fragmentV6 } from "../helpers/fragments.js";
import { fragmentHeader, optionsHeader, v6Chain } from "../helpers/ip-packets.js";
import { payloadOf, v4Echo, v6Echo } from "../helpers/packets.js";
import { type TestStack, testStack } from "../helpers/stack.js";

/** Where a packet can end at the link or network layer (one of them, exactly once). */
const IP_DISPOSITIONS = [
  "malformedPacketsReceived",
  "invalidSourceAddressesReceived",
  "invalidDestinationAddressesReceived",
  "fragmentsReceivedUnsupported",
  "fragmentsQueued",
  "preroutingDropped",
  "inputDropped",
  "unsupportedHeadersReceived",
  "unknownProtocolRcvdPackets",
  "noNextHeaderReceived",
  "otherTransportPacketsReceived",
  "packetsDelivered",
] as const satisfies readonly (keyof IPStats)[];

function ipDispositions(s: IPStats): number {
  let n = 0;
  for (const k of IP_DISPOSITIONS) n += s[k];
  return n;
}

function sum(o: object): number {
  let n = 0;
  for (const v of Object.values(o)) if (typeof v === "number") n += v;
  return n;
}

/** Link + network dispositions over both families. */
export function dispositions(stats: Stats): number {
  return (
    stats.nic.unknownL3ProtocolRcvdPackets + ipDispositions(stats.ipv4) + ipDispositions(stats.ipv6)
  );
}

/** Packets handed to ICMP and the ICMP receive counters they ended in (must match). */
export function icmpBalance(stats: Stats): { delivered: number; counted: number } {
  return {
    delivered: stats.ipv4.packetsDelivered + stats.ipv6.packetsDelivered,
    counted: sum(stats.icmp.v4.packetsReceived) + sum(stats.icmp.v6.packetsReceived),
  };
}

/** Valid packets of every shape the stack handles, to mutate. */
function seeds(): Uint8Array[] {
  const rr = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]; // Record Route with room for 2 addresses
  const ts = [68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // Timestamp, timestamps only
  const big = v4Echo({ payload: payloadOf(3000), flags: 0 });
  const big6 = v6Echo({ payload: payloadOf(3000) });
  return [
    v4Echo(),
    v4Echo({ dst: "198.18.0.255" }),
    v4Echo({ options: Uint8Array.from(rr) }),
    v4Echo({ options: Uint8Array.from(ts) }),
    v4Echo({ type: 0 }),
    v4Echo({ protocol: 17 }),
    ...fragmentV4(big, evenPieces(3000 + 8, 1000)),
    v6Echo(),
    v6Echo({ dst: "ff02::1", src: "fe80::1" }),
    v6Chain({ headers: [optionsHeader(0, [5, 2, 0, 0])] }),
    v6Chain({ headers: [fragmentHeader(0, false)] }),
    ...fragmentV6(big6, evenPieces(3000 + 8, 1000)),
    new Uint8Array(0),
    Uint8Array.of(0x45),
  ];
}

/** A packet: random bytes, or a seed with flipped bytes, cut short, or extended. */
export function packetArbitrary(): fc.Arbitrary<Uint8Array> {
  const seedList = seeds();
  const mutated = fc
    .tuple(
      fc.integer({ min: 0, max: seedList.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.oneof(fc.constant(-1), fc.nat({ max: 4000 })),
      fc.uint8Array({ maxLength: 16 }),
    )
    .map(([i, flips, cut, extra]) => {
      const base = seedList[i];
      let p = new Uint8Array(base.length + extra.length);
      p.set(base);
      p.set(extra, base.length);
      if (extra.length > 0 && cut < 0) p = p.subarray(0, base.length + extra.length);
      else if (cut >= 0) p = p.subarray(0, Math.min(cut, p.length));
      for (const [at, value] of flips) if (p.length > 0) p[at % p.length] = value;
      return p;
    });
  const random = fc.uint8Array({ maxLength: 200 }).map((p) => {
    // Random bytes with a plausible version nibble half the time, so they get past the NIC.
    if (p.length > 0 && p[0] & 1) p[0] = (p[0] & 0x0f) | (p[0] & 2 ? 0x60 : 0x40);
    return p;
  });
  return fc.oneof({ weight: 3, arbitrary: mutated }, { weight: 1, arbitrary: random });
}

/** A stack with a Forwarder that sometimes replies, sometimes consumes, sometimes falls through. */
export function fuzzStack(): TestStack {
  const t = testStack();
  let n = 0;
  const f = new Forwarder((req) => {
    n++;
    if (n % 3 === 0) return req.reply();
    return n % 3 === 1;
  });
  t.stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
  t.stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
  t.stack.setPromiscuousMode(1, (n & 1) === 0);
  return t;
}

/** Runs one packet; throws (failing the property) if the invariant breaks. */
export function checkOne(t: TestStack, packet: Uint8Array): void {
  const before = dispositions(t.stack.stats);
  const beforeNic = t.stack.stats.nic.packetsReceived;
  t.link.inject(packet);
  t.link.drain();
  const after = dispositions(t.stack.stats);
  if (t.stack.stats.nic.packetsReceived !== beforeNic + 1)
    throw new Error("the NIC did not count the packet");
  if (after !== before + 1)
    throw new Error(`packet ended in ${after - before} dispositions, not 1`);
  const icmp = icmpBalance(t.stack.stats);
  if (icmp.delivered !== icmp.counted) {
    throw new Error(`ICMP delivered ${icmp.delivered} but counted ${icmp.counted}`);
  }
}

/** Every non-zero counter, by dotted name (the fuzz histogram). */
export function histogram(stats: Stats): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (prefix: string, node: object): void => {
    for (const [k, v] of Object.entries(node)) {
      const name = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "number" && v !== 0) out[name] = v;
      else if (typeof v === "object" && v !== null) walk(name, v);
    }
  };
  walk("", stats);
  return out;
}
