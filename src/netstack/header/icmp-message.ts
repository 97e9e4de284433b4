import { checksum } from "./checksum.js";

/** Offsets shared by ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): type, code, checksum, Echo fields. */
const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4;
const SEQUENCE = 6;
/**
 * The Echo header (type, code, checksum, identifier, sequence) of ICMPv4 and ICMPv6 alike: the
 * Echo data (or an error's quoted packet) starts after it.
 */
export const ICMP_ECHO_HEADER_SIZE = 8;
const PAYLOAD = ICMP_ECHO_HEADER_SIZE;
const EMPTY = new Uint8Array(0);

/**
 * The Identifier field of an ICMPv4 or ICMPv6 message starting at byte 0 of `message`, read
 * without a view (the receive path reads it once per message to build the transport id).
 */
export function icmpIdent(message: Uint8Array): number {
  return (message[IDENT] << 8) | message[IDENT + 1];
}

/**
 * What ICMPv4 and ICMPv6 messages have in common: a view over one whole message, `length`
 * bytes from `offset` (clamped to the buffer). Getters read straight from the bytes.
 */
export abstract class ICMPMessageView {
  bytes: Uint8Array;
  offset: number;
  /** Bytes of the message, never past the end of `bytes`. */
  length: number;

  constructor(bytes: Uint8Array, offset = 0, length: number = bytes.length - offset) {
    this.bytes = bytes;
    this.offset = offset;
    this.length = Math.max(0, Math.min(length, bytes.length - offset));
  }

  /**
   * Points the view at another message, as the constructor would, and returns it: a per-packet
   * path keeps one view and re-points it instead of allocating one per packet. Call
   * `release()` when done, so the view does not keep the packet alive.
   */
  reset(bytes: Uint8Array, offset = 0, length: number = bytes.length - offset): this {
    this.bytes = bytes;
    this.offset = offset;
    this.length = Math.max(0, Math.min(length, bytes.length - offset));
    return this;
  }

  /** Lets go of the message (a reused view over an empty buffer). */
  release(): void {
    this.reset(EMPTY);
  }

  get type(): number {
    return this.bytes[this.offset + TYPE];
  }
  set type(v: number) {
    this.bytes[this.offset + TYPE] = v;
  }

  get code(): number {
    return this.bytes[this.offset + CODE];
  }
  set code(v: number) {
    this.bytes[this.offset + CODE] = v;
  }

  /** The Checksum field as stored. */
  get checksum(): number {
    return this.get16(CHECKSUM);
  }
  set checksum(v: number) {
    this.put16(CHECKSUM, v);
  }

  /** Identifier of an Echo (and, in ICMPv4, Timestamp / Information) message. */
  get ident(): number {
    return this.get16(IDENT);
  }
  set ident(v: number) {
    this.put16(IDENT, v);
  }

  /** Sequence Number of an Echo (and, in ICMPv4, Timestamp / Information) message. */
  get sequence(): number {
    return this.get16(SEQUENCE);
  }
  set sequence(v: number) {
    this.put16(SEQUENCE, v);
  }

  /** A view of the bytes after the first 8 (the Echo data, or an error's quoted packet). */
  payload(): Uint8Array {
    const start = this.offset + Math.min(PAYLOAD, this.length);
    return this.bytes.subarray(start, this.offset + this.length);
  }

  /** The ones'-complement sum of the message with its checksum field taken as zero. */
  protected sumWithoutChecksum(initial: number): number {
    const o = this.offset;
    const len = this.length;
    let sum = checksum(this.bytes, initial, o, Math.min(len, CHECKSUM));
    if (len > CHECKSUM + 2) sum = checksum(this.bytes, sum, o + CHECKSUM + 2, len - CHECKSUM - 2);
    return sum;
  }

  protected get16(field: number): number {
    const i = this.offset + field;
    return (this.bytes[i] << 8) | this.bytes[i + 1];
  }

  protected put16(field: number, v: number): void {
    const i = this.offset + field;
    this.bytes[i] = v >>> 8;
    this.bytes[i + 1] = v;
  }
}
