/**
 * Fragment builders and an independent reassembler for the fragmentation tests: split an IPv4
 * datagram or an IPv6 packet into fragments at chosen offsets, and put written fragments back
 * together to compare with what was sent.
 */
import { IPV4_FLAG_MF, IPv4Header } from "../../src/netstack/header/ipv4.js";
import { IPV6_MIN_SIZE } from "../../src/netstack/header/ipv6.js";

/** One piece: its offset in the fragmentable data and its length (the last runs to the end). */
export interface Piece {
  offset: number;
  length?: number;
  /** Override the M / MF flag (default: more unless the piece reaches the end). */
  more?: boolean;
}

/** Even pieces of `size` bytes (a multiple of 8) over `total` bytes. */
export function evenPieces(total: number, size: number): Piece[] {
  const out: Piece[] = [];
  for (let o = 0; o < total; o += size) out.push({ offset: o, length: Math.min(size, total - o) });
  return out;
}

/** IPv4 fragments of `datagram` (its header copied into each, checksum fixed). */
export function fragmentV4(
  datagram: Uint8Array,
  pieces: readonly Piece[],
  id?: number,
): Uint8Array[] {
  const h = new IPv4Header(datagram);
  const ihl = h.ihl;
  const payload = datagram.subarray(ihl, h.totalLength);
  return pieces.map((p) => {
    const length = p.length ?? payload.length - p.offset;
    const frag = new Uint8Array(ihl + length);
    frag.set(datagram.subarray(0, ihl), 0);
    frag.set(payload.subarray(p.offset, p.offset + length), ihl);
    const fh = new IPv4Header(frag);
    const more = p.more ?? p.offset + length < payload.length;
    fh.setFlagsFragmentOffset((h.flags & ~IPV4_FLAG_MF) | (more ? IPV4_FLAG_MF : 0), p.offset);
    fh.totalLength = frag.length;
    if (id !== undefined) fh.id = id;
    fh.checksum = 0;
    fh.checksum = fh.calculateChecksum();
    return frag;
  });
}

/**
 * IPv6 fragments of `packet` (a fixed header then the fragmentable part, no extension
 * headers): each gets the fixed header and a Fragment header with `id`.
 */
export function fragmentV6(
  packet: Uint8Array,
  pieces: readonly Piece[],
  id = 0x0badcafe,
): Uint8Array[] {
  const payload = packet.subarray(IPV6_MIN_SIZE);
  const nextHeader = packet[6];
  return pieces.map((p) => {
    const length = p.length ?? payload.length - p.offset;
    const frag = new Uint8Array(IPV6_MIN_SIZE + 8 + length);
    frag.set(packet.subarray(0, IPV6_MIN_SIZE), 0);
    frag[6] = 44;
    const plen = 8 + length;
    frag[4] = plen >> 8;
    frag[5] = plen & 0xff;
    const more = p.more ?? p.offset + length < payload.length;
    frag[40] = nextHeader;
    const v = (p.offset & ~7) | (more ? 1 : 0);
    frag[42] = v >> 8;
    frag[43] = v & 0xff;
    frag[44] = id >>> 24;
    frag[45] = (id >>> 16) & 0xff;
    frag[46] = (id >>> 8) & 0xff;
    frag[47] = id & 0xff;
    frag.set(payload.subarray(p.offset, p.offset + length), 48);
    return frag;
  });
}

/** Reassembles written IPv4 fragments (any order) into one datagram; throws on gaps. */
export function reassembleV4(frags: readonly Uint8Array[]): Uint8Array {
  const parts = frags
    .map((f) => {
      const h = new IPv4Header(f);
      return { h, offset: h.fragmentOffset, data: f.subarray(h.ihl, h.totalLength), f };
    })
    .sort((a, b) => a.offset - b.offset);
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (first.offset !== 0 || last.h.moreFragments) throw new Error("incomplete");
  const total = last.offset + last.data.length;
  const out = new Uint8Array(first.h.ihl + total);
  out.set(first.f.subarray(0, first.h.ihl), 0);
  let covered = 0;
  for (const p of parts) {
    if (p.offset !== covered) throw new Error(`gap or overlap at ${covered}`);
    out.set(p.data, first.h.ihl + p.offset);
    covered += p.data.length;
  }
  const h = new IPv4Header(out);
  h.setFlagsFragmentOffset(h.flags & ~IPV4_FLAG_MF, 0);
  h.totalLength = out.length;
  h.checksum = 0;
  h.checksum = h.calculateChecksum();
  return out;
}

/** Reassembles written IPv6 fragments (fixed header + Fragment header each) into one packet. */
export function reassembleV6(frags: readonly Uint8Array[]): Uint8Array {
  const parts = frags
    .map((f) => {
      if (f[6] !== 44) throw new Error("not a fragment");
      const v = (f[42] << 8) | f[43];
      return { offset: v & ~7, more: (v & 1) === 1, next: f[40], data: f.subarray(48), f };
    })
    .sort((a, b) => a.offset - b.offset);
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (first.offset !== 0 || last.more) throw new Error("incomplete");
  const total = last.offset + last.data.length;
  const out = new Uint8Array(IPV6_MIN_SIZE + total);
  out.set(first.f.subarray(0, IPV6_MIN_SIZE), 0);
  out[6] = first.next;
  out[4] = total >> 8;
  out[5] = total & 0xff;
  let covered = 0;
  for (const p of parts) {
    if (p.offset !== covered) throw new Error(`gap or overlap at ${covered}`);
    out.set(p.data, IPV6_MIN_SIZE + p.offset);
    covered += p.data.length;
  }
  return out;
}

/** The Identification of an IPv6 fragment. */
export function v6FragmentId(frag: Uint8Array): number {
  return ((frag[44] << 24) | (frag[45] << 16) | (frag[46] << 8) | frag[47]) >>> 0;
}
