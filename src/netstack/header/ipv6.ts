/**
 * The IPv6 fixed header (RFC 8200 §3):
 *
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version| Traffic Class |           Flow Label                  |
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   |                  Source Address (128 bits)                    |
 *   |               Destination Address (128 bits)                  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Extension headers are parsed elsewhere; `nextHeader` here is the fixed header's field.
 */
import { type Address, addressCopyAt } from "../address.js";

export const IPV6_MIN_SIZE = 40;
export const IPV6_VERSION = 6;
export const IPV6_ADDRESS_SIZE = 16;
/** RFC 8200 §5: every link carries at least this much. */
export const IPV6_MIN_MTU = 1280;
export const IPV6_MAX_PAYLOAD_SIZE = 65535;

/** Next Header values (IANA protocol numbers) the stack cares about. */
export const IPV6_NEXT_HEADER_HOP_BY_HOP = 0;
export const IPV6_NEXT_HEADER_ROUTING = 43;
export const IPV6_NEXT_HEADER_FRAGMENT = 44;
export const IPV6_NEXT_HEADER_ICMPV6 = 58;
export const IPV6_NEXT_HEADER_NO_NEXT_HEADER = 59;
export const IPV6_NEXT_HEADER_DESTINATION_OPTIONS = 60;

export const IPV6_PAYLOAD_LENGTH_OFFSET = 4;
export const IPV6_NEXT_HEADER_OFFSET = 6;
export const IPV6_HOP_LIMIT_OFFSET = 7;
export const IPV6_SOURCE_ADDRESS_OFFSET = 8;
export const IPV6_DESTINATION_ADDRESS_OFFSET = 24;

/** The fields of the IPv6 fixed header in plain form. */
export interface IPv6Fields {
  trafficClass: number;
  /** 20 bits. */
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  srcAddr: Address;
  dstAddr: Address;
}

/**
 * A view over an IPv6 fixed header at `offset` in `bytes`: no copying, addresses and payload
 * are `subarray` views. Check {@link IPv6Header.isValid} before trusting the payload length.
 */
export class IPv6Header {
  static readonly MIN_SIZE = IPV6_MIN_SIZE;

  constructor(
    readonly bytes: Uint8Array,
    readonly offset = 0,
  ) {}

  get version(): number {
    return this.bytes[this.offset] >>> 4;
  }
  set version(v: number) {
    const i = this.offset;
    this.bytes[i] = ((v & 0x0f) << 4) | (this.bytes[i] & 0x0f);
  }

  /** The 8-bit Traffic Class (DSCP and ECN), which straddles bytes 0 and 1. */
  get trafficClass(): number {
    const i = this.offset;
    return ((this.bytes[i] & 0x0f) << 4) | (this.bytes[i + 1] >>> 4);
  }
  set trafficClass(v: number) {
    const i = this.offset;
    this.bytes[i] = (this.bytes[i] & 0xf0) | ((v >>> 4) & 0x0f);
    this.bytes[i + 1] = ((v & 0x0f) << 4) | (this.bytes[i + 1] & 0x0f);
  }

  /** The 20-bit Flow Label. */
  get flowLabel(): number {
    const i = this.offset;
    return ((this.bytes[i + 1] & 0x0f) << 16) | (this.bytes[i + 2] << 8) | this.bytes[i + 3];
  }
  set flowLabel(v: number) {
    const i = this.offset;
    this.bytes[i + 1] = (this.bytes[i + 1] & 0xf0) | ((v >>> 16) & 0x0f);
    this.bytes[i + 2] = v >>> 8;
    this.bytes[i + 3] = v;
  }

  /** Bytes after the fixed header, extension headers included. */
  get payloadLength(): number {
    const i = this.offset + IPV6_PAYLOAD_LENGTH_OFFSET;
    return (this.bytes[i] << 8) | this.bytes[i + 1];
  }
  set payloadLength(v: number) {
    const i = this.offset + IPV6_PAYLOAD_LENGTH_OFFSET;
    this.bytes[i] = v >>> 8;
    this.bytes[i + 1] = v;
  }

  get nextHeader(): number {
    return this.bytes[this.offset + IPV6_NEXT_HEADER_OFFSET];
  }
  set nextHeader(v: number) {
    this.bytes[this.offset + IPV6_NEXT_HEADER_OFFSET] = v;
  }

  get hopLimit(): number {
    return this.bytes[this.offset + IPV6_HOP_LIMIT_OFFSET];
  }
  set hopLimit(v: number) {
    this.bytes[this.offset + IPV6_HOP_LIMIT_OFFSET] = v;
  }

  /** A view of the source address bytes. */
  get sourceAddress(): Address {
    const i = this.offset + IPV6_SOURCE_ADDRESS_OFFSET;
    return this.bytes.subarray(i, i + IPV6_ADDRESS_SIZE);
  }
  setSourceAddress(a: Address): void {
    this.bytes.set(checkV6(a), this.offset + IPV6_SOURCE_ADDRESS_OFFSET);
  }
  /** A copy of the source address bytes. */
  copySourceAddress(): Address {
    return addressCopyAt(this.bytes, this.offset + IPV6_SOURCE_ADDRESS_OFFSET, IPV6_ADDRESS_SIZE);
  }

  /** A view of the destination address bytes. */
  get destinationAddress(): Address {
    const i = this.offset + IPV6_DESTINATION_ADDRESS_OFFSET;
    return this.bytes.subarray(i, i + IPV6_ADDRESS_SIZE);
  }
  setDestinationAddress(a: Address): void {
    this.bytes.set(checkV6(a), this.offset + IPV6_DESTINATION_ADDRESS_OFFSET);
  }
  /** A copy of the destination address bytes. */
  copyDestinationAddress(): Address {
    const i = this.offset + IPV6_DESTINATION_ADDRESS_OFFSET;
    return addressCopyAt(this.bytes, i, IPV6_ADDRESS_SIZE);
  }

  /** A view of the Payload Length bytes after the fixed header, clamped to the buffer. */
  payload(): Uint8Array {
    const start = this.offset + IPV6_MIN_SIZE;
    return this.bytes.subarray(start, start + this.payloadLength);
  }

  /**
   * The buffer holds the fixed header, version is 6, and 40 + Payload Length fits both in
   * `packetSize` and in the buffer, so every view taken afterwards is complete.
   */
  isValid(packetSize: number): boolean {
    const avail = this.bytes.length - this.offset;
    if (this.offset < 0 || avail < IPV6_MIN_SIZE || packetSize < IPV6_MIN_SIZE) return false;
    const total = IPV6_MIN_SIZE + this.payloadLength;
    return this.version === IPV6_VERSION && total <= packetSize && total <= avail;
  }
}

function checkV6(a: Address): Address {
  if (a.length !== IPV6_ADDRESS_SIZE) {
    throw new RangeError(`IPv6 address must be ${IPV6_ADDRESS_SIZE} bytes, got ${a.length}`);
  }
  return a;
}

/** Writes the 40-byte fixed header at `offset`; the payload is not touched. */
export function encodeIPv6(buf: Uint8Array, offset: number, f: IPv6Fields): IPv6Header {
  if (offset < 0 || buf.length - offset < IPV6_MIN_SIZE) {
    throw new RangeError(`IPv6 header does not fit at ${offset} in ${buf.length} bytes`);
  }
  checkV6(f.srcAddr);
  checkV6(f.dstAddr);
  const h = new IPv6Header(buf, offset);
  buf[offset] = IPV6_VERSION << 4;
  buf[offset + 1] = 0;
  h.trafficClass = f.trafficClass;
  h.flowLabel = f.flowLabel;
  h.payloadLength = f.payloadLength;
  h.nextHeader = f.nextHeader;
  h.hopLimit = f.hopLimit;
  h.setSourceAddress(f.srcAddr);
  h.setDestinationAddress(f.dstAddr);
  return h;
}

/** The header's fields in plain form, addresses copied (for tests and logging). */
export function parseIPv6Fields(h: IPv6Header): IPv6Fields {
  return {
    trafficClass: h.trafficClass,
    flowLabel: h.flowLabel,
    payloadLength: h.payloadLength,
    nextHeader: h.nextHeader,
    hopLimit: h.hopLimit,
    srcAddr: h.sourceAddress.slice(),
    dstAddr: h.destinationAddress.slice(),
  };
}
