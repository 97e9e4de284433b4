/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Two kinds of value appear here, as in gVisor's `checksum` package:
 * - a *sum*: the folded 16-bit ones'-complement sum of some bytes (what `checksum` returns);
 * - a *field*: what a header stores, `~sum & 0xffff` over the covered bytes with the field
 *   itself taken as zero. A message whose field is filled in sums to 0xffff.
 */
import type { Address } from "../address.js";

/** Size in bytes of a checksum field. */
export const CHECKSUM_SIZE = 2;

// Bytes summed between folds: 16384 words of at most 0xffff stay below 2^30, so the partial
// sum remains a small integer that V8 keeps in a register instead of a heap number.
const FOLD_BLOCK = 0x8000;

/**
 * The ones'-complement sum (folded, not complemented) of `length` bytes of `buf` from
 * `offset`, added to `initial` (a previous sum over an even number of bytes). An odd length is
 * padded with a zero byte, as the last byte of a message is. Allocation-free: this is the hot
 * path of every received and sent packet.
 */
export function checksum(
  buf: Uint8Array,
  initial = 0,
  offset = 0,
  length: number = buf.length - offset,
): number {
  const end = offset + length;
  if (offset < 0 || length < 0 || end > buf.length) {
    throw new RangeError(
      `checksum range [${offset}, ${end}) is outside a buffer of ${buf.length} bytes`,
    );
  }
  let sum = initial;
  let i = offset;
  const evenEnd = end - (length & 1);
  while (i < evenEnd) {
    const blockEnd = evenEnd - i > FOLD_BLOCK ? i + FOLD_BLOCK : evenEnd;
    let s = 0;
    // Eight bytes per step: the byte math is cheaper than a DataView and needs no alignment.
    for (; i + 8 <= blockEnd; i += 8) {
      s +=
        ((buf[i] << 8) | buf[i + 1]) +
        ((buf[i + 2] << 8) | buf[i + 3]) +
        ((buf[i + 4] << 8) | buf[i + 5]) +
        ((buf[i + 6] << 8) | buf[i + 7]);
    }
    for (; i < blockEnd; i += 2) s += (buf[i] << 8) | buf[i + 1];
    sum += s;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (i < end) sum += buf[i] << 8;
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** Ones'-complement addition of two folded sums (gVisor's `checksum.Combine`). */
export function combine(a: number, b: number): number {
  const v = a + b;
  return (v + (v >>> 16)) & 0xffff;
}

/**
 * The sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 768 / RFC 8200 §8.1), not complemented:
 * source, destination, upper-layer length and protocol. The same word-level sum covers both
 * families, because IPv4's 16-bit length and IPv6's 32-bit length sum the same way.
 */
export function pseudoHeaderChecksum(
  protocol: number,
  src: Address,
  dst: Address,
  length: number,
): number {
  let sum = checksum(src);
  sum = checksum(dst, sum);
  sum = combine(sum, length >>> 16);
  sum = combine(sum, length & 0xffff);
  return combine(sum, protocol & 0xff);
}

/**
 * RFC 1624 eq. 3, HC' = ~(~HC + ~m + m'): the new checksum FIELD after a 16-bit word at an
 * even offset of the covered bytes changed from `oldValue` to `newValue`. `xsum` is the field
 * as stored in the header. Equation 3 (not eq. 2) so the result matches a full recomputation,
 * with one exception inherent to ones' complement: if the covered bytes become all zero, the
 * true sum is +0 but the update yields -0 (field 0x0000 instead of 0xffff). No IP header can be
 * all zero (the version); an ICMP message can (Echo Reply, ident 0, sequence 0, no data), so
 * paths that may produce one recompute instead.
 */
export function checksumUpdate16(xsum: number, oldValue: number, newValue: number): number {
  return ~combine(combine(~xsum & 0xffff, ~oldValue & 0xffff), newValue & 0xffff) & 0xffff;
}

/**
 * {@link checksumUpdate16} for a run of bytes starting at an even offset of the covered bytes
 * (an address, a TTL/protocol pair): the sums of the old and new runs stand in for m and m'.
 */
export function checksumUpdateBytes(
  xsum: number,
  oldBytes: Uint8Array,
  newBytes: Uint8Array,
): number {
  if (oldBytes.length !== newBytes.length) {
    throw new RangeError(
      `checksum update of ${oldBytes.length} old bytes with ${newBytes.length} new bytes`,
    );
  }
  return checksumUpdate16(xsum, checksum(oldBytes), checksum(newBytes));
}
