/**
 * IPv4 options (RFC 791 §3.1, RFC 2113): type numbers, field offsets and small views over one
 * option's bytes. Offsets are within the option; a Parameter Problem pointer adds the option's
 * offset in the IP header.
 *
 *   Record Route (type 7)             Timestamp (type 68)                Router Alert (type 148)
 *   +------+------+-------+---//      +------+------+-------+---------+  +------+------+-------+
 *   |  7   | len  |pointer| route     |  68  | len  |pointer|oflw|flg |  | 148  |  4   | value |
 *   +------+------+-------+---//      +------+------+-------+---------+  +------+------+-------+
 *                                     | [address]  timestamp ...       |
 */
import type { Address } from "../address.js";

/** End of Option List: everything after it is padding. */
export const IPV4_OPTION_EOL = 0;
/** No Operation: one byte, may repeat. */
export const IPV4_OPTION_NOP = 1;
export const IPV4_OPTION_RECORD_ROUTE = 7;
export const IPV4_OPTION_TIMESTAMP = 68;
/** Copied flag | option number 20 (RFC 2113 §2.1). */
export const IPV4_OPTION_ROUTER_ALERT = 0x80 | 20;

export const IPV4_OPTION_TYPE_OFFSET = 0;
export const IPV4_OPTION_LENGTH_OFFSET = 1;

/** Record Route: type, length, pointer; the pointer is 1-based and at least 4. */
export const IPV4_OPTION_RR_HEADER_LENGTH = 3;
export const IPV4_OPTION_RR_POINTER_OFFSET = 2;

/** Timestamp: type, length, pointer, overflow|flags; the pointer is 1-based and at least 5. */
export const IPV4_OPTION_TS_HEADER_LENGTH = 4;
export const IPV4_OPTION_TS_POINTER_OFFSET = 2;
export const IPV4_OPTION_TS_OFLW_FLG_OFFSET = 3;
/** Flag 0: timestamps only (4-byte entries). */
export const IPV4_OPTION_TS_ONLY = 0;
/** Flag 1: each timestamp preceded by the recording host's address (8-byte entries). */
export const IPV4_OPTION_TS_WITH_ADDRESS = 1;
/** Flag 3: addresses prespecified; a host stamps only its own slot (8-byte entries). */
export const IPV4_OPTION_TS_PRESPECIFIED = 3;
export const IPV4_OPTION_TS_SIZE = 4;
export const IPV4_OPTION_TS_WITH_ADDRESS_SIZE = 8;

/**
 * RFC 4727 experiment option 30: always 4 bytes (type, length, a 16-bit value). Otherwise an
 * unknown option, but gVisor's IPv4OptionIterator.Next checks its length (Dec 2024).
 */
export const IPV4_OPTION_EXPERIMENT = 30;
export const IPV4_OPTION_EXPERIMENT_LENGTH = 4;

/** Router Alert: always 4 bytes, value 0 ("examine packet"), the rest reserved. */
export const IPV4_OPTION_ROUTER_ALERT_LENGTH = 4;
export const IPV4_OPTION_ROUTER_ALERT_VALUE_OFFSET = 2;

const MS_PER_DAY = 24 * 3600 * 1000;

/** RFC 791 p. 22: milliseconds since midnight UT, as a 32-bit value. */
export function ipv4TimestampNow(wallClockMs: number): number {
  return (Math.floor(wallClockMs) % MS_PER_DAY) >>> 0;
}

/** A view over one Timestamp option (`bytes` holds exactly the option). */
export class IPv4OptionTimestamp {
  constructor(readonly bytes: Uint8Array) {}

  get length(): number {
    return this.bytes.length;
  }
  get pointer(): number {
    return this.bytes[IPV4_OPTION_TS_POINTER_OFFSET];
  }
  get flags(): number {
    return this.bytes[IPV4_OPTION_TS_OFLW_FLG_OFFSET] & 0x0f;
  }
  get overflow(): number {
    return this.bytes[IPV4_OPTION_TS_OFLW_FLG_OFFSET] >>> 4;
  }

  /** Adds one to the 4-bit overflow counter; returns the new value (0 when it wrapped). */
  incrementOverflow(): number {
    const i = IPV4_OPTION_TS_OFLW_FLG_OFFSET;
    this.bytes[i] = (this.bytes[i] + 0x10) & 0xff;
    return this.overflow;
  }

  /**
   * Fills the slot at the pointer and advances it, per the flag. The caller has checked there
   * is room for a whole entry.
   */
  record(address: Address, timestamp: number): void {
    const b = this.bytes;
    const slot = this.pointer - 1;
    switch (this.flags) {
      case IPV4_OPTION_TS_ONLY:
        put32(b, slot, timestamp);
        b[IPV4_OPTION_TS_POINTER_OFFSET] += IPV4_OPTION_TS_SIZE;
        return;
      case IPV4_OPTION_TS_WITH_ADDRESS:
        b.set(address, slot);
        put32(b, slot + 4, timestamp);
        b[IPV4_OPTION_TS_POINTER_OFFSET] += IPV4_OPTION_TS_WITH_ADDRESS_SIZE;
        return;
      case IPV4_OPTION_TS_PRESPECIFIED:
        if (
          b[slot] === address[0] &&
          b[slot + 1] === address[1] &&
          b[slot + 2] === address[2] &&
          b[slot + 3] === address[3]
        ) {
          put32(b, slot + 4, timestamp);
          b[IPV4_OPTION_TS_POINTER_OFFSET] += IPV4_OPTION_TS_WITH_ADDRESS_SIZE;
        }
        return;
    }
  }
}

/** A view over one Record Route option. */
export class IPv4OptionRecordRoute {
  constructor(readonly bytes: Uint8Array) {}

  get length(): number {
    return this.bytes.length;
  }
  get pointer(): number {
    return this.bytes[IPV4_OPTION_RR_POINTER_OFFSET];
  }

  /** Stores the address at the pointer and advances it; the caller checked the room. */
  storeAddress(address: Address): void {
    this.bytes.set(address, this.pointer - 1);
    this.bytes[IPV4_OPTION_RR_POINTER_OFFSET] += 4;
  }
}

/** The Router Alert option's 16-bit value. */
export function ipv4RouterAlertValue(option: Uint8Array): number {
  const i = IPV4_OPTION_ROUTER_ALERT_VALUE_OFFSET;
  return (option[i] << 8) | option[i + 1];
}

function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/** A serializable option for building packets (gVisor's IPv4SerializableOption). */
export type IPv4OptionFields =
  | { type: typeof IPV4_OPTION_EOL | typeof IPV4_OPTION_NOP }
  | { type: number; data: Uint8Array };

/** Serializes options and pads them with zeros (End of Option List) to a multiple of 4. */
export function encodeIPv4Options(options: readonly IPv4OptionFields[]): Uint8Array {
  let n = 0;
  for (const o of options) n += "data" in o ? 2 + o.data.length : 1;
  const out = new Uint8Array((n + 3) & ~3);
  let w = 0;
  for (const o of options) {
    out[w++] = o.type;
    if ("data" in o) {
      out[w++] = 2 + o.data.length;
      out.set(o.data, w);
      w += o.data.length;
    }
  }
  return out;
}
