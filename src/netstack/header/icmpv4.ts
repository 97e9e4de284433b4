/**
 * ICMPv4 messages (RFC 792):
 *
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |     Type      |     Code      |          Checksum             |
 *   |   Identifier / Pointer / unused   |  Sequence Number / MTU    |
 *   |     Data ...
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The checksum covers the whole ICMP message and nothing else (no pseudo-header).
 */
import { checksum } from "./checksum.js";
import { ICMPMessageView } from "./icmp-message.js";

/** Type, code, checksum and the 4-byte rest of header (ident/sequence for Echo). */
export const ICMPV4_MIN_SIZE = 8;
export const ICMPV4_PAYLOAD_OFFSET = 8;
export const ICMPV4_CHECKSUM_OFFSET = 2;
/** RFC 792: errors quote the offending IP header plus at least 64 bits of its data. */
export const ICMPV4_MIN_ERROR_PAYLOAD_SIZE = 8;

// Types (RFC 792, RFC 950 for the obsolete information messages).
export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DST_UNREACHABLE = 3;
export const ICMPV4_SRC_QUENCH = 4;
export const ICMPV4_REDIRECT = 5;
export const ICMPV4_ECHO = 8;
export const ICMPV4_TIME_EXCEEDED = 11;
export const ICMPV4_PARAM_PROBLEM = 12;
export const ICMPV4_TIMESTAMP = 13;
export const ICMPV4_TIMESTAMP_REPLY = 14;
export const ICMPV4_INFO_REQUEST = 15;
export const ICMPV4_INFO_REPLY = 16;

// Destination Unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
export const ICMPV4_NET_UNREACHABLE = 0;
export const ICMPV4_HOST_UNREACHABLE = 1;
export const ICMPV4_PROTO_UNREACHABLE = 2;
export const ICMPV4_PORT_UNREACHABLE = 3;
export const ICMPV4_FRAG_NEEDED = 4;
export const ICMPV4_SOURCE_ROUTE_FAILED = 5;
export const ICMPV4_DST_NET_UNKNOWN = 6;
export const ICMPV4_DST_HOST_UNKNOWN = 7;
export const ICMPV4_SRC_HOST_ISOLATED = 8;
export const ICMPV4_NET_PROHIBITED = 9;
export const ICMPV4_HOST_PROHIBITED = 10;
export const ICMPV4_NET_UNREACHABLE_FOR_TOS = 11;
export const ICMPV4_HOST_UNREACHABLE_FOR_TOS = 12;
export const ICMPV4_ADMIN_PROHIBITED = 13;
export const ICMPV4_HOST_PRECEDENCE_VIOLATION = 14;
export const ICMPV4_PRECEDENCE_CUTOFF = 15;

// Time Exceeded codes.
export const ICMPV4_TTL_EXCEEDED = 0;
export const ICMPV4_REASSEMBLY_TIMEOUT = 1;

// Parameter Problem codes (RFC 792, RFC 1108).
export const ICMPV4_PARAM_POINTER = 0;
export const ICMPV4_PARAM_MISSING_OPTION = 1;
export const ICMPV4_PARAM_BAD_LENGTH = 2;

const POINTER = 4;
const MTU = 6;

/**
 * A view over one whole ICMPv4 message: `length` bytes from `offset` (clamped to the buffer).
 * Getters read straight from the bytes; `payload()` is a `subarray` view.
 */
export class ICMPv4Header extends ICMPMessageView {
  static readonly MIN_SIZE = ICMPV4_MIN_SIZE;

  /** Next-hop MTU of a Fragmentation Needed message (RFC 1191 §4). */
  get mtu(): number {
    return this.get16(MTU);
  }
  set mtu(v: number) {
    this.put16(MTU, v);
  }

  /** Pointer of a Parameter Problem message: the offending octet of the quoted header. */
  get pointer(): number {
    return this.bytes[this.offset + POINTER];
  }
  set pointer(v: number) {
    this.bytes[this.offset + POINTER] = v;
  }

  /** Whether the message holds at least the 8-byte header. */
  isValid(): boolean {
    return this.length >= ICMPV4_MIN_SIZE;
  }

  /** The Checksum field value for the message as it stands (checksum field taken as zero). */
  calculateChecksum(): number {
    return ~this.sumWithoutChecksum(0) & 0xffff;
  }

  /** Whether the whole message, checksum field included, sums to 0xffff. */
  isChecksumValid(): boolean {
    if (this.length < ICMPV4_CHECKSUM_OFFSET + 2) return false;
    return checksum(this.bytes, 0, this.offset, this.length) === 0xffff;
  }
}

/** An Echo or Echo Reply message in plain form. */
export interface ICMPv4EchoFields {
  type: number;
  code: number;
  ident: number;
  sequence: number;
  payload: Uint8Array;
}

/**
 * Writes an Echo / Echo Reply (header, then payload) at `offset` with its checksum, and
 * returns the view over exactly that message. `f.payload` may overlap `buf` (an in-place reply).
 */
export function encodeICMPv4Echo(
  buf: Uint8Array,
  offset: number,
  f: ICMPv4EchoFields,
): ICMPv4Header {
  const length = ICMPV4_MIN_SIZE + f.payload.length;
  if (offset < 0 || buf.length - offset < length) {
    throw new RangeError(`ICMPv4 message of ${length} bytes does not fit at ${offset}`);
  }
  buf.set(f.payload, offset + ICMPV4_PAYLOAD_OFFSET);
  const h = new ICMPv4Header(buf, offset, length);
  h.type = f.type;
  h.code = f.code;
  h.checksum = 0;
  h.ident = f.ident;
  h.sequence = f.sequence;
  h.checksum = h.calculateChecksum();
  return h;
}

/** The Echo fields of a message, payload copied (for tests and logging). */
export function parseICMPv4EchoFields(h: ICMPv4Header): ICMPv4EchoFields {
  return {
    type: h.type,
    code: h.code,
    ident: h.ident,
    sequence: h.sequence,
    payload: h.payload().slice(),
  };
}
