/**
 * The differential test's seeded input generator: the same seed gives the same inputs. An input
 * is a list of packets written to a fresh stack one after the other (one packet, or the
 * fragments of a datagram in some order). Families:
 *  - v4-echo / v6-echo: Echo Requests with random header fields, payloads, sources and
 *    destinations (own — the NIC has two addresses per family —, broadcast, multicast, foreign,
 *    unroutable, IPv4-mapped; with shape.ts's default IPv6 route every IPv6 source has a route
 *    back, so a mapped source reaches ipv6.go checkV4Mapped);
 *  - v4-options: Echo Requests and UDP datagrams with IPv4 options, valid and edge cases;
 *  - v6-ext: IPv6 extension header chains (Hop-by-Hop, Destination Options, Routing, atomic
 *    Fragment) with every option-action class;
 *  - v4-frag / v6-frag: fragments in and out of order, with duplicates, overlaps and subsets;
 *  - malformed: a valid packet with header bytes flipped, truncated or lengths and checksums wrong;
 *  - other: other protocols and every ICMP type;
 *  - burst: 40–80 packets that each call for an ICMP error (Protocol Unreachable, Parameter
 *    Problem: neither stack has a UDP transport), Echo Requests among them: the shared ICMP rate limiter (gVisor's
 *    ICMPRateLimiter, burst 50) on a clock that does not move — both stacks send the first 50
 *    errors and no more, and answer every Echo Request.
 * Reassembly timeouts are left out: no input waits for one.
 */
import { checksum, pseudoHeaderChecksum } from "../../src/netstack/header/checksum.js";
import { IPV4_FLAG_DF } from "../../src/netstack/header/ipv4.js";
import { fragmentV4, fragmentV6, type Piece } from "../helpers/fragments.js";
import {
  type ExtensionHeader,
  fragmentHeader,
  optionsHeader,
  routingHeader,
  v4Datagram,
  v6Chain,
} from "../helpers/ip-packets.js";
import { addr, v4Echo, v6Echo } from "../helpers/packets.js";

/** mulberry32: a small seeded PRNG. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
}

export const FAMILIES = [
  "v4-echo",
  "v6-echo",
  "v4-options",
  "v6-ext",
  "v4-frag",
  "v6-frag",
  "malformed",
  "other",
  "burst",
] as const;
export type Family = (typeof FAMILIES)[number];

export interface Input {
  family: Family;
  packets: Uint8Array[];
}

const V4_SOURCES = [
  "198.18.0.1",
  "198.18.0.77",
  "203.0.113.9",
  "0.0.0.0",
  "255.255.255.255",
  "224.0.0.9",
  "198.18.0.255",
  // Nearer the NIC's second address (shape.ts): source selection when the answer's source is
  // chosen (an Echo Request to a broadcast or multicast address).
  "198.19.0.1",
  "198.19.200.1",
];
const V4_DESTS = [
  "198.18.0.2",
  "198.18.0.255",
  "255.255.255.255",
  "224.0.0.1",
  "224.0.0.22",
  "198.18.0.3",
  "203.0.113.1",
  "127.0.0.1",
  "198.19.0.2",
  "198.19.0.255",
];
const V6_SOURCES = [
  "fd00:1::1",
  "fe80::1",
  "fd00:1::99",
  "fd00:9::1",
  "::",
  "ff02::1",
  "::ffff:198.18.0.1",
  "::1",
  "fd00:3::1",
];
const V6_DESTS = [
  "fd00:1::2",
  "fe80::2",
  "ff02::1",
  "ff02::1:ff00:2",
  "ff02::2",
  "ff05::1",
  "fd00:1::3",
  "fd00:2::1",
  "::ffff:198.18.0.2",
  "::1",
  "fd00:3::2",
];

/** Mostly the common case, sometimes anything from the list. */
function address(r: Rng, list: readonly string[]): string {
  return r.chance(0.6) ? list[0] : r.pick(list);
}

function payload(r: Rng, max: number): Uint8Array {
  const n = r.chance(0.2) ? r.int(9) : r.int(max + 1);
  return r.chance(0.5) ? r.bytes(n) : new Uint8Array(n).map((_, i) => i & 0xff);
}

function v4EchoInput(r: Rng, options?: Uint8Array): Uint8Array {
  return v4Echo({
    src: address(r, V4_SOURCES),
    dst: address(r, V4_DESTS),
    ttl: r.pick([0, 1, 64, 255, r.int(256)]),
    tos: r.chance(0.5) ? 0 : r.int(256),
    id: r.pick([0, 1, 0x1234, r.int(0x10000)]),
    flags: r.pick([0, IPV4_FLAG_DF, 4, 6]),
    code: r.chance(0.8) ? 0 : r.int(256),
    ident: r.int(0x10000),
    sequence: r.int(0x10000),
    payload: payload(r, 1600),
    options,
  });
}

function v6EchoInput(r: Rng): Uint8Array {
  return v6Echo({
    src: address(r, V6_SOURCES),
    dst: address(r, V6_DESTS),
    hopLimit: r.pick([0, 1, 64, 255, r.int(256)]),
    trafficClass: r.chance(0.5) ? 0 : r.int(256),
    flowLabel: r.int(0x100000),
    code: r.chance(0.8) ? 0 : r.int(256),
    ident: r.int(0x10000),
    sequence: r.int(0x10000),
    payload: payload(r, 1600),
  });
}

/** One IPv4 option: valid and edge-case encodings of every kind gVisor knows, and unknown ones. */
function v4Option(r: Rng): number[] {
  switch (r.int(9)) {
    case 0:
      return [1]; // NOP
    case 1:
      return [0]; // End of Option List
    case 2: {
      // Record Route: slots, pointer and length, sometimes wrong.
      const slots = r.range(1, 3);
      const len = r.chance(0.8) ? 3 + 4 * slots : r.range(0, 12);
      const ptr = r.pick([4, 4 + 4 * r.int(slots + 1), r.int(16)]);
      return [7, len, ptr, ...new Array(Math.max(0, len - 3)).fill(0)].slice(0, Math.max(2, len));
    }
    case 3: {
      // Timestamp: flags 0/1/3 (and bad), overflow counter, pointer, length.
      const flag = r.pick([0, 1, 3, 2, 4]);
      const per = flag === 0 ? 4 : 8;
      const slots = r.range(1, 3);
      const len = r.chance(0.8) ? 4 + per * slots : r.range(0, 12);
      const ptr = r.pick([5, 5 + per * r.int(slots + 1), r.int(20)]);
      const oflw = r.chance(0.7) ? 0 : r.int(16);
      const body = new Array(Math.max(0, len - 4)).fill(0);
      if (flag === 3 && body.length >= 4) body.splice(0, 4, 198, 18, 0, r.pick([2, 9]));
      return [68, len, ptr, (oflw << 4) | flag, ...body].slice(0, Math.max(2, len));
    }
    case 4:
      // Router Alert: valid, wrong value, wrong length.
      return r.pick([
        [148, 4, 0, 0],
        [148, 4, 0, 1],
        [148, 3, 0],
        [148, 5, 0, 0, 0],
      ]);
    case 5:
      // Experiment option 30: only length 4 is valid (master, Dec 2024).
      return r.pick([
        [30, 4, 0, 1],
        [30, 3, 0],
        [30, 2],
        [30, 5, 0, 0, 0],
      ]);
    case 6: {
      const type = r.pick([130, 131, 137, 136, 82, r.int(256)]);
      const len = r.range(0, 6);
      return [type, len, ...new Array(Math.max(0, len - 2)).fill(0xaa)];
    }
    case 7:
      return [...r.bytes(r.range(1, 6))];
    default:
      return [1, 1];
  }
}

function v4OptionsInput(r: Rng): Uint8Array {
  const opts: number[] = [];
  const n = r.range(1, 3);
  for (let i = 0; i < n; i++) opts.push(...v4Option(r));
  const options = new Uint8Array(opts.slice(0, 40));
  if (r.chance(0.7)) return v4EchoInput(r, options);
  return v4Datagram({
    protocol: r.pick([17, 6, 2, 3]),
    payload: payload(r, 64),
    options,
    flags: r.pick([0, IPV4_FLAG_DF]),
    dst: address(r, V4_DESTS),
  });
}

function v6Option(r: Rng): number[] {
  switch (r.int(7)) {
    case 0:
      return [0]; // Pad1
    case 1: {
      const n = r.int(6);
      return [1, n, ...new Array(n).fill(r.chance(0.8) ? 0 : 0xff)]; // PadN
    }
    case 2:
      return r.pick([
        [5, 2, 0, 0],
        [5, 2, 0, 1],
        [5, 3, 0, 0, 0],
      ]); // Router Alert
    case 3:
      return [0xc2, 4, 0, 1, 0, 0]; // Jumbo Payload
    default: {
      // Unknown option: the two high bits choose skip / discard / Parameter Problem.
      const type = (r.int(4) << 6) | r.range(8, 63);
      const n = r.int(4);
      return [type, n, ...new Array(n).fill(0)];
    }
  }
}

function v6ExtInput(r: Rng): Uint8Array {
  const headers: ExtensionHeader[] = [];
  const n = r.range(1, 3);
  for (let i = 0; i < n; i++) {
    const opts: number[] = [];
    for (let k = r.range(1, 2); k > 0; k--) opts.push(...v6Option(r));
    switch (r.int(5)) {
      case 0:
        headers.push(optionsHeader(0, opts)); // Hop-by-Hop (valid only first)
        break;
      case 1:
      case 2:
        headers.push(optionsHeader(60, opts));
        break;
      case 3:
        headers.push(routingHeader(r.pick([0, 2, 3, 4]), r.pick([0, 0, 1, 2])));
        break;
      default:
        headers.push(fragmentHeader(0, false, r.int(0x10000))); // atomic fragment
    }
  }
  const upper = r.pick([58, 58, 58, 17, 6, 2, 59, 1, 0, 60, 43, 44]);
  return v6Chain({
    headers,
    upper,
    upperBytes: upper === 58 ? undefined : payload(r, 32),
    dst: address(r, V6_DESTS.slice(0, 4)),
    type: r.chance(0.9) ? 128 : r.int(256),
  });
}

/** Pieces over `total` bytes: a cover in steps of 8, then shuffles, duplicates, overlaps, subsets. */
function pieces(r: Rng, total: number): Piece[] {
  const out: Piece[] = [];
  for (let o = 0; o < total; ) {
    const left = total - o;
    const len =
      left <= 8 ? left : Math.min(left, 8 * r.range(1, Math.max(1, Math.ceil(left / 16))));
    out.push({ offset: o, length: len });
    o += len;
  }
  if (out.length > 1 && r.chance(0.4)) r.shuffle(out);
  if (out.length > 0 && r.chance(0.15)) out.push(r.pick(out)); // exact duplicate
  if (r.chance(0.1) && total > 24) {
    const o = 8 * r.int(Math.floor(total / 8));
    out.splice(r.int(out.length + 1), 0, { offset: o, length: 8, more: true }); // subset/overlap
  }
  if (r.chance(0.1) && total > 24) {
    const o = 8 * r.int(Math.floor(total / 8) - 1);
    out.splice(r.int(out.length + 1), 0, { offset: o, length: 16, more: true }); // overlap
  }
  if (out.length > 1 && r.chance(0.1)) out.splice(r.int(out.length), 1); // a piece missing
  if (r.chance(0.05)) out.push({ offset: total, length: 0, more: false }); // empty last piece
  return out;
}

function v4FragInput(r: Rng): Uint8Array[] {
  const d = r.chance(0.6)
    ? v4Echo({
        payload: payload(r, 3000),
        flags: 0,
        id: r.int(0x10000),
        options: r.chance(0.2) ? new Uint8Array([7, 7, 4, 0, 0, 0, 0]) : undefined,
      })
    : v4Datagram({
        protocol: r.pick([17, 6, 3]),
        payload: payload(r, 200),
        flags: 0,
        // Sometimes a bad Timestamp option (length 3), copied into every fragment.
        options: r.chance(0.2) ? new Uint8Array([68, 3, 5, 0]) : undefined,
      });
  const total = d.length - (d[0] & 0x0f) * 4;
  return fragmentV4(d, pieces(r, total));
}

function v6FragInput(r: Rng): Uint8Array[] {
  const p = r.chance(0.6)
    ? v6Echo({ payload: payload(r, 3000), dst: address(r, V6_DESTS.slice(0, 3)) })
    : v6Chain({
        headers: r.chance(0.5) ? [optionsHeader(60, v6Option(r))] : [],
        upper: r.pick([17, 58, 2]),
        upperBytes: payload(r, 100),
      });
  return fragmentV6(p, pieces(r, p.length - 40), r.int(0x100000000));
}

function malformedInput(r: Rng): Uint8Array {
  const base = r.chance(0.5) ? v4EchoInput(r) : v6EchoInput(r);
  let p = base.slice(0, Math.max(base.length, 1));
  switch (r.int(5)) {
    case 0: {
      // A few bytes of the first 48 flipped.
      for (let k = r.range(1, 3); k > 0; k--) {
        const i = r.int(Math.min(48, p.length));
        p[i] ^= 1 << r.int(8);
      }
      break;
    }
    case 1:
      p = p.slice(0, r.int(p.length)); // truncated
      break;
    case 2: {
      // Length field wrong.
      const v = r.int(0x10000);
      const at = p[0] >> 4 === 4 ? 2 : 4;
      p[at] = v >> 8;
      p[at + 1] = v & 0xff;
      break;
    }
    case 3: {
      // Checksum (IPv4 header or ICMP) wrong.
      const at = p[0] >> 4 === 4 ? r.pick([10, 22]) : 42;
      p[at] ^= 0xff;
      break;
    }
    default: {
      // Random header byte anywhere in the fixed header.
      p[r.int(Math.min(p.length, 40))] = r.int(256);
    }
  }
  return p;
}

/** Recomputes an ICMP(v6) checksum over `msg` in place. */
function fixChecksum(msg: Uint8Array, initial: number): void {
  msg[2] = 0;
  msg[3] = 0;
  const c = ~checksum(msg, initial) & 0xffff;
  msg[2] = c >> 8;
  msg[3] = c & 0xff;
}

/** A Neighbor Solicitation for one of the NIC's addresses, sometimes with a source link-layer option. */
function neighborSolicitation(r: Rng): Uint8Array {
  const target = r.pick(["fd00:1::2", "fe80::2"]);
  const src = r.pick(["fd00:1::1", "fe80::1", "::"]);
  const dst = r.pick([target, `ff02::1:ff00:2`]);
  const body = new Uint8Array(r.chance(0.5) ? 24 : 16);
  body.set(addr(target), 0);
  if (body.length === 24) body.set([1, 1, 2, 0, 0, 0, 0, 1], 16);
  const p = v6Echo({
    type: 135,
    code: 0,
    ident: 0,
    sequence: 0,
    src,
    dst,
    hopLimit: 255,
    payload: body,
  });
  fixChecksum(p.subarray(40), pseudoHeaderChecksum(58, addr(src), addr(dst), p.length - 40));
  return p;
}

function otherInput(r: Rng): Uint8Array {
  if (r.chance(0.1)) return neighborSolicitation(r);
  switch (r.int(3)) {
    case 0:
      return v4Datagram({
        protocol: r.int(256),
        payload: payload(r, 64),
        dst: address(r, V4_DESTS),
      });
    case 1: {
      // Any ICMPv4 type and code, checksum right; errors carry a quoted datagram.
      const type = r.pick([0, 3, 4, 5, 11, 12, 13, 14, 15, 17, r.int(256)]);
      const body = r.chance(0.5) ? v4Datagram({ protocol: 17 }).subarray(0, 28) : payload(r, 64);
      const p = v4Echo({ type, code: r.int(4), payload: body, dst: address(r, V4_DESTS) });
      fixChecksum(p.subarray(20), 0);
      return p;
    }
    default: {
      const type = r.pick([1, 2, 3, 4, 129, 130, 131, 133, 134, 135, 136, 137, 143, r.int(256)]);
      const src = address(r, V6_SOURCES);
      const dst = address(r, V6_DESTS);
      const p = v6Echo({
        type,
        code: r.int(3),
        src,
        dst,
        payload: payload(r, 64),
        hopLimit: r.pick([255, 64]),
      });
      fixChecksum(p.subarray(40), pseudoHeaderChecksum(58, addr(src), addr(dst), p.length - 40));
      return p;
    }
  }
}

/** One packet of a burst: mostly one an error answers, sometimes an Echo Request. */
function burstPacket(r: Rng, n: number): Uint8Array {
  const body = new Uint8Array(8 + r.int(24)).map((_, i) => (i === 0 ? n & 0xff : r.int(256)));
  switch (r.int(5)) {
    case 0:
      return v4Datagram({ protocol: 17, payload: body }); // Protocol Unreachable (no UDP)
    case 1:
      return v4Datagram({ protocol: r.pick([3, 99, 200]), payload: body }); // Protocol Unreachable
    case 2:
      return v6Chain({ upper: 17, upperBytes: body }); // Parameter Problem (no UDP)
    case 3:
      return v6Chain({ upper: r.pick([3, 99, 200]), upperBytes: body }); // Parameter Problem
    default:
      return r.chance(0.5) ? v4Echo({ sequence: n }) : v6Echo({ sequence: n });
  }
}

/** Input number `index` of the run seeded with `seed`. */
export function generate(seed: number, index: number): Input {
  const r = new Rng((seed * 0x9e3779b1) ^ index);
  const family = FAMILIES[r.int(FAMILIES.length)];
  switch (family) {
    case "v4-echo":
      return { family, packets: [v4EchoInput(r)] };
    case "v6-echo":
      return { family, packets: [v6EchoInput(r)] };
    case "v4-options":
      return { family, packets: [v4OptionsInput(r)] };
    case "v6-ext":
      return { family, packets: [v6ExtInput(r)] };
    case "v4-frag":
      return { family, packets: v4FragInput(r) };
    case "v6-frag":
      return { family, packets: v6FragInput(r) };
    case "malformed":
      return { family, packets: [malformedInput(r)] };
    case "burst":
      return {
        family,
        packets: Array.from({ length: r.range(40, 80) }, (_, n) => burstPacket(r, n)),
      };
    default:
      return { family, packets: [otherInput(r)] };
  }
}
