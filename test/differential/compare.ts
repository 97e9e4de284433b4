/**
 * Normalization, comparison and classification of the two stacks' outputs. Only what is fresh
 * by design is normalized: IPv4 Timestamp option values (the clock), the IP ID of the ICMPv4
 * errors a stack originates, and the Identification of the IPv6 fragments it writes. Checksums
 * are checked on each side, then replaced by a valid/invalid mark (they cover the fields above).
 */
import { checksum, pseudoHeaderChecksum } from "../../src/netstack/header/checksum.js";

const ICMPV4_ERRORS = new Set([3, 4, 5, 11, 12]);

/** Zeroes the timestamp values of any Timestamp option in the IPv4 header at `ip`. */
function zeroTimestamps(p: Uint8Array, ip: number): void {
  if (p.length < ip + 20) return;
  const ihl = (p[ip] & 0x0f) * 4;
  let i = ip + 20;
  const end = Math.min(ip + ihl, p.length);
  while (i < end) {
    const type = p[i];
    if (type === 0) break;
    if (type === 1) {
      i++;
      continue;
    }
    const len = i + 1 < end ? p[i + 1] : 0;
    if (len < 2 || i + len > end) break;
    if (type === 68 && len >= 4) {
      const flag = p[i + 3] & 0x0f;
      // Flag 0: timestamps only; flags 1 and 3: (address, timestamp) pairs.
      const step = flag === 0 ? 4 : 8;
      const first = flag === 0 ? 4 : 8;
      for (let k = i + first; k + 4 <= i + len; k += step) p.fill(0, k, k + 4);
      // And the 4 bytes before the pointer: the timestamp this stack wrote, even where a
      // misaligned pointer put it between slots (both stacks write it there).
      const ptr = p[i + 2];
      if (ptr >= 5 && ptr - 1 <= len) p.fill(0, i + ptr - 5, i + ptr - 1);
    }
    i += len;
  }
}

function mark(p: Uint8Array, at: number, valid: boolean): void {
  p[at] = valid ? 0 : 0xff;
  p[at + 1] = valid ? 0 : 0xff;
}

/** One written packet, normalized. */
export function normalize(packet: Uint8Array): Uint8Array {
  const p = packet.slice();
  const version = p.length > 0 ? p[0] >> 4 : 0;
  if (version === 4 && p.length >= 20) {
    const ihl = (p[0] & 0x0f) * 4;
    const headerOk = checksum(p.subarray(0, ihl)) === 0xffff;
    const fragmented = ((p[6] & 0x1f) << 8) | p[7] || (p[6] & 0x20) !== 0;
    if (p[9] === 1 && !fragmented && p.length >= ihl + 8) {
      const msg = p.subarray(ihl);
      const icmpOk = checksum(msg) === 0xffff;
      if (ICMPV4_ERRORS.has(msg[0])) {
        p[4] = 0; // fresh ID of an error this stack originates
        p[5] = 0;
        zeroTimestamps(p, ihl + 8); // the quoted header, options processed in place
      }
      mark(p, ihl + 2, icmpOk);
    }
    zeroTimestamps(p, 0);
    mark(p, 10, headerOk);
  } else if (version === 6 && p.length >= 40) {
    if (p[6] === 44 && p.length >= 48) p.fill(0, 44, 48);
    else if (p[6] === 58 && p.length >= 44) {
      const msg = p.subarray(40);
      const ok =
        checksum(
          msg,
          pseudoHeaderChecksum(58, p.subarray(8, 24), p.subarray(24, 40), msg.length),
        ) === 0xffff;
      mark(p, 42, ok);
    }
  }
  return p;
}

export const hex = (p: Uint8Array): string => Buffer.from(p).toString("hex");

/** A short description of one output packet: family and ICMP type/code (or protocol). */
export function describe(p: Uint8Array): string {
  const v = p.length > 0 ? p[0] >> 4 : 0;
  if (v === 4 && p.length >= 20) {
    const ihl = (p[0] & 0x0f) * 4;
    const frag = ((p[6] & 0x1f) << 8) | p[7];
    if (p[9] === 1 && frag === 0 && p.length > ihl + 1) return `v4 icmp ${p[ihl]}/${p[ihl + 1]}`;
    return `v4 proto ${p[9]}${frag || p[6] & 0x20 ? " frag" : ""}`;
  }
  if (v === 6 && p.length >= 40) {
    if (p[6] === 58 && p.length > 41) return `v6 icmp ${p[40]}/${p[41]}`;
    return `v6 next ${p[6]}`;
  }
  return `? ${p.length} bytes`;
}

export const describeAll = (ps: readonly Uint8Array[]): string =>
  ps.length === 0 ? "nothing" : ps.map(describe).join(", ");
