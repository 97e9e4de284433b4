/**
 * ICMPv6 messages (RFC 4443 §2.1):
 *
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |     Type      |     Code      |          Checksum             |
 *   |                         Message Body                          |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Unlike ICMPv4, the checksum also covers the IPv6 pseudo-header (RFC 8200 §8.1), so computing
 * or checking it needs the source and destination addresses.
 */
import type { Address } from "../address.js";
import { checksum, combine, pseudoHeaderChecksum } from "./checksum.js";
import { ICMPMessageView } from "./icmp-message.js";
import { IPV6_NEXT_HEADER_ICMPV6 } from "./ipv6.js";

/** Type, code and checksum. */
export const ICMPV6_HEADER_SIZE = 4;
/** The header plus the 4-byte first word of the body (ident/sequence, MTU, pointer). */
export const ICMPV6_MIN_SIZE = 8;
export const ICMPV6_ECHO_MIN_SIZE = 8;
export const ICMPV6_PAYLOAD_OFFSET = 8;
export const ICMPV6_CHECKSUM_OFFSET = 2;

// Error types (RFC 4443).
export const ICMPV6_DST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAM_PROBLEM = 4;
// Informational types (RFC 4443, RFC 2710 MLD, RFC 4861 NDP, RFC 3810 MLDv2).
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_MLD_QUERY = 130;
export const ICMPV6_MLD_REPORT = 131;
export const ICMPV6_MLD_DONE = 132;
export const ICMPV6_ROUTER_SOLICIT = 133;
export const ICMPV6_ROUTER_ADVERT = 134;
export const ICMPV6_NEIGHBOR_SOLICIT = 135;
export const ICMPV6_NEIGHBOR_ADVERT = 136;
export const ICMPV6_REDIRECT = 137;
export const ICMPV6_MLDV2_REPORT = 143;

// Destination Unreachable codes.
export const ICMPV6_NO_ROUTE = 0;
export const ICMPV6_ADMIN_PROHIBITED = 1;
export const ICMPV6_BEYOND_SCOPE = 2;
export const ICMPV6_ADDRESS_UNREACHABLE = 3;
export const ICMPV6_PORT_UNREACHABLE = 4;
export const ICMPV6_SRC_ADDR_FAILED_POLICY = 5;
export const ICMPV6_REJECT_ROUTE = 6;

// Time Exceeded codes.
export const ICMPV6_HOP_LIMIT_EXCEEDED = 0;
export const ICMPV6_REASSEMBLY_TIMEOUT = 1;

// Parameter Problem codes.
export const ICMPV6_ERRONEOUS_HEADER = 0;
export const ICMPV6_UNKNOWN_NEXT_HEADER = 1;
export const ICMPV6_UNKNOWN_OPTION = 2;

const WORD = 4;

/**
 * A view over one whole ICMPv6 message: `length` bytes from `offset` (clamped to the buffer).
 * Getters read straight from the bytes; payload views are `subarray`s.
 */
export class ICMPv6Header extends ICMPMessageView {
  static readonly MIN_SIZE = ICMPV6_MIN_SIZE;

  /** The 32-bit MTU of a Packet Too Big message. */
  get mtu(): number {
    return this.get32(WORD);
  }
  set mtu(v: number) {
    this.put32(WORD, v);
  }

  /** The 32-bit Pointer of a Parameter Problem message (offset into the invoking packet). */
  get pointer(): number {
    return this.get32(WORD);
  }
  set pointer(v: number) {
    this.put32(WORD, v);
  }

  /** Whether the message holds at least type, code, checksum and the first body word. */
  isValid(): boolean {
    return this.length >= ICMPV6_MIN_SIZE;
  }

  /** A view of the message body: everything after type, code and checksum (NDP parses this). */
  messageBody(): Uint8Array {
    const start = this.offset + Math.min(ICMPV6_HEADER_SIZE, this.length);
    return this.bytes.subarray(start, this.offset + this.length);
  }

  /**
   * The Checksum field value for the message as it stands, over the pseudo-header (`src`,
   * `dst`, this message's length, next header 58) and the message with the field taken as zero.
   */
  calculateChecksum(src: Address, dst: Address): number {
    const pseudo = pseudoHeaderChecksum(IPV6_NEXT_HEADER_ICMPV6, src, dst, this.length);
    return ~this.sumWithoutChecksum(pseudo) & 0xffff;
  }

  /** Whether pseudo-header plus the whole message, checksum field included, sum to 0xffff. */
  isChecksumValid(src: Address, dst: Address): boolean {
    if (this.length < ICMPV6_HEADER_SIZE) return false;
    const pseudo = pseudoHeaderChecksum(IPV6_NEXT_HEADER_ICMPV6, src, dst, this.length);
    return combine(pseudo, checksum(this.bytes, 0, this.offset, this.length)) === 0xffff;
  }

  private get32(field: number): number {
    const i = this.offset + field;
    const b = this.bytes;
    return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
  }

  private put32(field: number, v: number): void {
    const i = this.offset + field;
    this.bytes[i] = v >>> 24;
    this.bytes[i + 1] = v >>> 16;
    this.bytes[i + 2] = v >>> 8;
    this.bytes[i + 3] = v;
  }
}

/** An Echo Request or Echo Reply in plain form. */
export interface ICMPv6EchoFields {
  type: number;
  code: number;
  ident: number;
  sequence: number;
  payload: Uint8Array;
}

/**
 * Writes an Echo Request / Reply (header, then payload) at `offset` with its checksum for the
 * pseudo-header of `src` → `dst`, and returns the view over exactly that message.
 * `f.payload` may overlap `buf` (an in-place reply).
 */
export function encodeICMPv6Echo(
  buf: Uint8Array,
  offset: number,
  f: ICMPv6EchoFields,
  src: Address,
  dst: Address,
): ICMPv6Header {
  const length = ICMPV6_ECHO_MIN_SIZE + f.payload.length;
  if (offset < 0 || buf.length - offset < length) {
    throw new RangeError(`ICMPv6 message of ${length} bytes does not fit at ${offset}`);
  }
  buf.set(f.payload, offset + ICMPV6_PAYLOAD_OFFSET);
  const h = new ICMPv6Header(buf, offset, length);
  h.type = f.type;
  h.code = f.code;
  h.checksum = 0;
  h.ident = f.ident;
  h.sequence = f.sequence;
  h.checksum = h.calculateChecksum(src, dst);
  return h;
}

/** The Echo fields of a message, payload copied (for tests and logging). */
export function parseICMPv6EchoFields(h: ICMPv6Header): ICMPv6EchoFields {
  return {
    type: h.type,
    code: h.code,
    ident: h.ident,
    sequence: h.sequence,
    payload: h.payload().slice(),
  };
}
