/**
 * The IPv4 header (RFC 791 §3.1):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version|  IHL  |Type of Service|          Total Length         |
 *   |         Identification        |Flags|      Fragment Offset    |
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *   |                    Options                    |    Padding    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
import { type Address, addressCopyAt } from "../address.js";
import { checksum } from "./checksum.js";

export const IPV4_MIN_SIZE = 20;
/** IHL is 4 bits of 32-bit words: at most 15 * 4 bytes. */
export const IPV4_MAX_HEADER_SIZE = 60;
export const IPV4_MAX_OPTIONS_SIZE = IPV4_MAX_HEADER_SIZE - IPV4_MIN_SIZE;
export const IPV4_MAX_TOTAL_SIZE = 65535;
export const IPV4_VERSION = 4;
export const IPV4_ADDRESS_SIZE = 4;
/** IHL and the fragment offset count in these units. */
export const IPV4_IHL_STRIDE = 4;
export const IPV4_FRAGMENT_OFFSET_STRIDE = 8;
/** RFC 791 §3.2: every host must accept datagrams of this size. */
export const IPV4_MIN_MTU = 68;

/** Bits of the 3-bit Flags field. */
export const IPV4_FLAG_MF = 1;
export const IPV4_FLAG_DF = 2;

export const IPV4_PROTOCOL_ICMP = 1;

export const IPV4_TOTAL_LENGTH_OFFSET = 2;
export const IPV4_CHECKSUM_OFFSET = 10;
export const IPV4_SOURCE_ADDRESS_OFFSET = 12;
export const IPV4_DESTINATION_ADDRESS_OFFSET = 16;

const VERSION_IHL = 0;
const TOS = 1;
const ID = 4;
const FLAGS_FRAGMENT_OFFSET = 6;
const TTL = 8;
const PROTOCOL = 9;

/** The fields of an IPv4 header in plain form; IHL follows from `options`. */
export interface IPv4Fields {
  tos: number;
  totalLength: number;
  id: number;
  /** The 3-bit Flags field (IPV4_FLAG_*). */
  flags: number;
  /** In bytes; a multiple of 8. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  srcAddr: Address;
  dstAddr: Address;
  /** Raw option bytes; encode pads them with zeros (End of Option List) to a multiple of 4. */
  options?: Uint8Array;
  /** The checksum field to write; computed when absent. */
  checksum?: number;
}

/**
 * A view over an IPv4 header at `offset` in `bytes`: getters and setters go straight to the
 * bytes and never copy (addresses, options and payload are `subarray` views). Check
 * {@link IPv4Header.isValid} before trusting what the header says about lengths.
 */
export class IPv4Header {
  static readonly MIN_SIZE = IPV4_MIN_SIZE;

  constructor(
    readonly bytes: Uint8Array,
    readonly offset = 0,
  ) {}

  get version(): number {
    return this.bytes[this.offset + VERSION_IHL] >>> 4;
  }
  set version(v: number) {
    const i = this.offset + VERSION_IHL;
    this.bytes[i] = ((v & 0x0f) << 4) | (this.bytes[i] & 0x0f);
  }

  /** Header length in bytes (IHL * 4). */
  get ihl(): number {
    return (this.bytes[this.offset + VERSION_IHL] & 0x0f) * IPV4_IHL_STRIDE;
  }
  set ihl(bytes: number) {
    const i = this.offset + VERSION_IHL;
    this.bytes[i] = (this.bytes[i] & 0xf0) | ((bytes >>> 2) & 0x0f);
  }

  get tos(): number {
    return this.bytes[this.offset + TOS];
  }
  set tos(v: number) {
    this.bytes[this.offset + TOS] = v;
  }

  get totalLength(): number {
    const i = this.offset + IPV4_TOTAL_LENGTH_OFFSET;
    return (this.bytes[i] << 8) | this.bytes[i + 1];
  }
  set totalLength(v: number) {
    this.put16(IPV4_TOTAL_LENGTH_OFFSET, v);
  }

  get id(): number {
    const i = this.offset + ID;
    return (this.bytes[i] << 8) | this.bytes[i + 1];
  }
  set id(v: number) {
    this.put16(ID, v);
  }

  /** The 3-bit Flags field: IPV4_FLAG_MF | IPV4_FLAG_DF (the top bit is reserved). */
  get flags(): number {
    return this.bytes[this.offset + FLAGS_FRAGMENT_OFFSET] >>> 5;
  }
  set flags(v: number) {
    const i = this.offset + FLAGS_FRAGMENT_OFFSET;
    this.bytes[i] = ((v & 0x07) << 5) | (this.bytes[i] & 0x1f);
  }

  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number {
    const i = this.offset + FLAGS_FRAGMENT_OFFSET;
    return (((this.bytes[i] & 0x1f) << 8) | this.bytes[i + 1]) * IPV4_FRAGMENT_OFFSET_STRIDE;
  }
  set fragmentOffset(bytes: number) {
    const i = this.offset + FLAGS_FRAGMENT_OFFSET;
    const units = (bytes >>> 3) & 0x1fff;
    this.bytes[i] = (this.bytes[i] & 0xe0) | (units >>> 8);
    this.bytes[i + 1] = units;
  }

  get moreFragments(): boolean {
    return (this.flags & IPV4_FLAG_MF) !== 0;
  }
  set moreFragments(v: boolean) {
    this.flags = v ? this.flags | IPV4_FLAG_MF : this.flags & ~IPV4_FLAG_MF;
  }

  get dontFragment(): boolean {
    return (this.flags & IPV4_FLAG_DF) !== 0;
  }
  set dontFragment(v: boolean) {
    this.flags = v ? this.flags | IPV4_FLAG_DF : this.flags & ~IPV4_FLAG_DF;
  }

  get ttl(): number {
    return this.bytes[this.offset + TTL];
  }
  set ttl(v: number) {
    this.bytes[this.offset + TTL] = v;
  }

  get protocol(): number {
    return this.bytes[this.offset + PROTOCOL];
  }
  set protocol(v: number) {
    this.bytes[this.offset + PROTOCOL] = v;
  }

  /** The Header Checksum field as stored. */
  get checksum(): number {
    const i = this.offset + IPV4_CHECKSUM_OFFSET;
    return (this.bytes[i] << 8) | this.bytes[i + 1];
  }
  set checksum(v: number) {
    this.put16(IPV4_CHECKSUM_OFFSET, v);
  }

  /** A view of the source address bytes. */
  get sourceAddress(): Address {
    const i = this.offset + IPV4_SOURCE_ADDRESS_OFFSET;
    return this.bytes.subarray(i, i + IPV4_ADDRESS_SIZE);
  }
  setSourceAddress(a: Address): void {
    this.bytes.set(checkV4(a), this.offset + IPV4_SOURCE_ADDRESS_OFFSET);
  }
  /** A copy of the source address bytes. */
  copySourceAddress(): Address {
    return addressCopyAt(this.bytes, this.offset + IPV4_SOURCE_ADDRESS_OFFSET, IPV4_ADDRESS_SIZE);
  }

  /** A view of the destination address bytes. */
  get destinationAddress(): Address {
    const i = this.offset + IPV4_DESTINATION_ADDRESS_OFFSET;
    return this.bytes.subarray(i, i + IPV4_ADDRESS_SIZE);
  }
  setDestinationAddress(a: Address): void {
    this.bytes.set(checkV4(a), this.offset + IPV4_DESTINATION_ADDRESS_OFFSET);
  }
  /** A copy of the destination address bytes. */
  copyDestinationAddress(): Address {
    const i = this.offset + IPV4_DESTINATION_ADDRESS_OFFSET;
    return addressCopyAt(this.bytes, i, IPV4_ADDRESS_SIZE);
  }

  /** Exchanges source and destination in place (a reply's addressing), allocating nothing. */
  swapAddresses(): void {
    const b = this.bytes;
    const src = this.offset + IPV4_SOURCE_ADDRESS_OFFSET;
    const dst = this.offset + IPV4_DESTINATION_ADDRESS_OFFSET;
    for (let i = 0; i < IPV4_ADDRESS_SIZE; i++) {
      const t = b[src + i];
      b[src + i] = b[dst + i];
      b[dst + i] = t;
    }
  }

  /** Sets both fields of the flags/fragment-offset word at once (gVisor's SetFlagsFragmentOffset). */
  setFlagsFragmentOffset(flags: number, fragmentOffset: number): void {
    this.put16(FLAGS_FRAGMENT_OFFSET, ((flags & 0x07) << 13) | ((fragmentOffset >>> 3) & 0x1fff));
  }

  /** A view of the option bytes (between the fixed header and IHL), clamped to the buffer. */
  options(): Uint8Array {
    const start = this.offset + IPV4_MIN_SIZE;
    return this.bytes.subarray(start, Math.max(start, this.offset + this.ihl));
  }

  /** A view of the bytes from IHL to Total Length, clamped to the buffer. */
  payload(): Uint8Array {
    const start = this.offset + this.ihl;
    return this.bytes.subarray(start, Math.max(start, this.offset + this.totalLength));
  }

  /** totalLength - ihl, or 0 when the header is inconsistent. */
  get payloadLength(): number {
    return Math.max(0, this.totalLength - this.ihl);
  }

  /**
   * The checksum field value for the header as it stands: the complement of the sum over the
   * IHL bytes with the checksum field taken as zero.
   */
  calculateChecksum(): number {
    const len = this.headerBytesAvailable();
    const o = this.offset;
    let sum = checksum(this.bytes, 0, o, Math.min(len, IPV4_CHECKSUM_OFFSET));
    if (len > IPV4_CHECKSUM_OFFSET + 2) {
      sum = checksum(this.bytes, sum, o + IPV4_CHECKSUM_OFFSET + 2, len - IPV4_CHECKSUM_OFFSET - 2);
    }
    return ~sum & 0xffff;
  }

  /** Whether the header (all IHL bytes, checksum field included) sums to 0xffff. */
  isChecksumValid(): boolean {
    const ihl = this.ihl;
    if (ihl < IPV4_MIN_SIZE || ihl > this.bytes.length - this.offset) return false;
    return checksum(this.bytes, 0, this.offset, ihl) === 0xffff;
  }

  /**
   * gVisor's IPv4.IsValid: the buffer holds the fixed header, version is 4, IHL ≥ 20 bytes,
   * IHL ≤ Total Length ≤ packetSize. Total Length must also fit in the buffer, so every view
   * taken afterwards is complete.
   */
  isValid(packetSize: number): boolean {
    const avail = this.bytes.length - this.offset;
    if (this.offset < 0 || avail < IPV4_MIN_SIZE) return false;
    const ihl = this.ihl;
    const total = this.totalLength;
    return (
      this.version === IPV4_VERSION &&
      ihl >= IPV4_MIN_SIZE &&
      ihl <= total &&
      total <= packetSize &&
      total <= avail
    );
  }

  private headerBytesAvailable(): number {
    return Math.max(0, Math.min(this.ihl, this.bytes.length - this.offset));
  }

  private put16(field: number, v: number): void {
    const i = this.offset + field;
    this.bytes[i] = v >>> 8;
    this.bytes[i + 1] = v;
  }
}

function checkV4(a: Address): Address {
  if (a.length !== IPV4_ADDRESS_SIZE) {
    throw new RangeError(`IPv4 address must be ${IPV4_ADDRESS_SIZE} bytes, got ${a.length}`);
  }
  return a;
}

/**
 * Writes an IPv4 header at `offset` (gVisor's IPv4.Encode, smoltcp's Ipv4Repr::emit): IHL from
 * the padded options, and the checksum unless `f.checksum` is given. The payload is not
 * touched; `f.totalLength` must already count it.
 */
export function encodeIPv4(buf: Uint8Array, offset: number, f: IPv4Fields): IPv4Header {
  const optionsLength = f.options?.length ?? 0;
  const padded = (optionsLength + IPV4_IHL_STRIDE - 1) & ~(IPV4_IHL_STRIDE - 1);
  const ihl = IPV4_MIN_SIZE + padded;
  if (ihl > IPV4_MAX_HEADER_SIZE) {
    throw new RangeError(`IPv4 options of ${optionsLength} bytes exceed ${IPV4_MAX_OPTIONS_SIZE}`);
  }
  if (offset < 0 || buf.length - offset < ihl) {
    throw new RangeError(`IPv4 header of ${ihl} bytes does not fit at ${offset} in ${buf.length}`);
  }
  checkV4(f.srcAddr);
  checkV4(f.dstAddr);
  const h = new IPv4Header(buf, offset);
  buf[offset + VERSION_IHL] = (IPV4_VERSION << 4) | (ihl >>> 2);
  h.tos = f.tos;
  h.totalLength = f.totalLength;
  h.id = f.id;
  h.setFlagsFragmentOffset(f.flags, f.fragmentOffset);
  h.ttl = f.ttl;
  h.protocol = f.protocol;
  h.checksum = 0;
  h.setSourceAddress(f.srcAddr);
  h.setDestinationAddress(f.dstAddr);
  if (f.options !== undefined && optionsLength > 0) {
    buf.set(f.options, offset + IPV4_MIN_SIZE);
    buf.fill(0, offset + IPV4_MIN_SIZE + optionsLength, offset + ihl);
  }
  h.checksum = f.checksum ?? h.calculateChecksum();
  return h;
}

/** The header's fields in plain form, addresses and options copied (for tests and logging). */
export function parseIPv4Fields(h: IPv4Header): IPv4Fields {
  const options = h.options();
  const f: IPv4Fields = {
    tos: h.tos,
    totalLength: h.totalLength,
    id: h.id,
    flags: h.flags,
    fragmentOffset: h.fragmentOffset,
    ttl: h.ttl,
    protocol: h.protocol,
    srcAddr: h.sourceAddress.slice(),
    dstAddr: h.destinationAddress.slice(),
    checksum: h.checksum,
  };
  if (options.length > 0) f.options = options.slice();
  return f;
}
