/**
 * IPv6 extension headers (RFC 8200 §4): identifiers, field offsets, the option-type action
 * bits, and a bounds-checked walk over the header chain. Offsets are from the start of the
 * IPv6 fixed header, as ICMPv6 Parameter Problem pointers count them.
 *
 *   Hop-by-Hop / Destination Options        Routing                        Fragment
 *   +--------+--------+----------//          +------+------+------+------+  +------+------+-----------+--+-+
 *   |  Next  |Hdr Ext | options             | Next | Len  | Type | Segs |  | Next | Rsvd | Offset    |Rs|M|
 *   | Header |  Len   | (TLV-encoded)       |      |      |      | Left |  +------+------+-----------+--+-+
 *   +--------+--------+----------//          +------+------+------+------+  |         Identification         |
 */

export const IPV6_EXT_HDR_HOP_BY_HOP = 0;
export const IPV6_EXT_HDR_ROUTING = 43;
export const IPV6_EXT_HDR_FRAGMENT = 44;
export const IPV6_EXT_HDR_DESTINATION_OPTIONS = 60;
export const IPV6_NO_NEXT_HEADER = 59;

export const IPV6_EXT_HDR_NEXT_HEADER_OFFSET = 0;
export const IPV6_EXT_HDR_LENGTH_OFFSET = 1;
/** Hdr Ext Len counts 8-octet units beyond the first 8 octets. */
export const IPV6_EXT_HDR_LENGTH_UNIT = 8;
/** Options start after Next Header and Hdr Ext Len. */
export const IPV6_EXT_HDR_OPTIONS_OFFSET = 2;

export const IPV6_ROUTING_TYPE_OFFSET = 2;
export const IPV6_ROUTING_SEGMENTS_LEFT_OFFSET = 3;

/** The Fragment header is always 8 octets; its length octet is reserved. */
export const IPV6_FRAGMENT_EXT_HDR_LENGTH = 8;
export const IPV6_FRAGMENT_OFFSET_FIELD = 2;
export const IPV6_FRAGMENT_ID_OFFSET = 4;

/** Option types (RFC 8200 §4.2, RFC 2711). */
export const IPV6_OPTION_PAD1 = 0;
export const IPV6_OPTION_PADN = 1;
export const IPV6_OPTION_ROUTER_ALERT = 5;
/** The Router Alert option carries a 2-octet value. */
export const IPV6_OPTION_ROUTER_ALERT_DATA_LENGTH = 2;

/** What an unrecognized option's two high-order bits order (RFC 8200 §4.2). */
export const IPV6_OPTION_ACTION_SKIP = 0;
export const IPV6_OPTION_ACTION_DISCARD = 1;
/** Discard and send Parameter Problem code 2, even to a multicast destination. */
export const IPV6_OPTION_ACTION_DISCARD_SEND_ICMP = 2;
/** Discard and send Parameter Problem code 2 unless the destination was multicast. */
export const IPV6_OPTION_ACTION_DISCARD_SEND_ICMP_NO_MULTICAST = 3;

export function ipv6OptionUnknownAction(optionType: number): number {
  return optionType >>> 6;
}

/** Whether this Next Header value names an extension header this module can walk. */
export function isIPv6ExtensionHeader(nextHeader: number): boolean {
  return (
    nextHeader === IPV6_EXT_HDR_HOP_BY_HOP ||
    nextHeader === IPV6_EXT_HDR_ROUTING ||
    nextHeader === IPV6_EXT_HDR_FRAGMENT ||
    nextHeader === IPV6_EXT_HDR_DESTINATION_OPTIONS
  );
}

/**
 * The length in bytes of the extension header `id` at `offset`, or -1 when its length octets
 * are not within `end`. (The whole header may still run past `end`; callers check.)
 */
export function ipv6ExtensionHeaderLength(
  bytes: Uint8Array,
  offset: number,
  end: number,
  id: number,
): number {
  if (id === IPV6_EXT_HDR_FRAGMENT) return IPV6_FRAGMENT_EXT_HDR_LENGTH;
  if (offset + IPV6_EXT_HDR_LENGTH_OFFSET >= end) return -1;
  return (bytes[offset + IPV6_EXT_HDR_LENGTH_OFFSET] + 1) * IPV6_EXT_HDR_LENGTH_UNIT;
}

/** A view over a Fragment header at `offset`. */
export class IPv6FragmentHeader {
  constructor(
    readonly bytes: Uint8Array,
    readonly offset: number,
  ) {}
  get nextHeader(): number {
    return this.bytes[this.offset];
  }
  /** Fragment Offset in bytes (the field counts 8-octet units). */
  get fragmentOffset(): number {
    const i = this.offset + IPV6_FRAGMENT_OFFSET_FIELD;
    return (((this.bytes[i] << 8) | this.bytes[i + 1]) >>> 3) * 8;
  }
  get more(): boolean {
    return (this.bytes[this.offset + IPV6_FRAGMENT_OFFSET_FIELD + 1] & 1) !== 0;
  }
  get id(): number {
    const i = this.offset + IPV6_FRAGMENT_ID_OFFSET;
    return (
      ((this.bytes[i] << 24) |
        (this.bytes[i + 1] << 16) |
        (this.bytes[i + 2] << 8) |
        this.bytes[i + 3]) >>>
      0
    );
  }
  /** RFC 6946: offset 0 and no more fragments — the whole datagram in one fragment. */
  get isAtomic(): boolean {
    return this.fragmentOffset === 0 && !this.more;
  }
}

/** Where the upper-layer header starts, as {@link findIPv6UpperLayer} finds it. */
export interface IPv6UpperLayer {
  readonly protocol: number;
  readonly offset: number;
}

/**
 * Walks the extension header chain of the IPv6 packet in `bytes[0, end)` and returns the first
 * Next Header value that is not a walkable extension header, with its offset; null when the
 * chain runs past `end`, ends in No Next Header, or reaches a non-first fragment (whose
 * payload holds no headers). Never throws.
 */
export function findIPv6UpperLayer(
  bytes: Uint8Array,
  firstNextHeader: number,
  start: number,
  end: number,
): IPv6UpperLayer | null {
  let next = firstNextHeader;
  let offset = start;
  // 256 headers of at least 8 bytes would need more than a jumbogram; the bound only guards.
  for (let guard = 0; guard < 8192 && isIPv6ExtensionHeader(next); guard++) {
    const length = ipv6ExtensionHeaderLength(bytes, offset, end, next);
    if (length < 0 || offset + length > end) return null;
    if (
      next === IPV6_EXT_HDR_FRAGMENT &&
      new IPv6FragmentHeader(bytes, offset).fragmentOffset !== 0
    )
      return null;
    next = bytes[offset];
    offset += length;
  }
  if (next === IPV6_NO_NEXT_HEADER || isIPv6ExtensionHeader(next)) return null;
  return { protocol: next, offset };
}
