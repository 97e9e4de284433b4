/**
 * IP addresses as raw bytes: 4 for IPv4, 16 for IPv6, in network order (gVisor's
 * `tcpip.Address`). Text conversion follows RFC 4291 §2.2 on input and RFC 5952 on output.
 */

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address. */
export type Address = Uint8Array;

// The constants below are shared instances: treat them as read-only (a typed array cannot be
// frozen).

/** 0.0.0.0 */
export const IPV4_UNSPECIFIED: Address = Uint8Array.of(0, 0, 0, 0);
/** 224.0.0.1, the all-systems group (RFC 1112). */
export const IPV4_ALL_SYSTEMS: Address = Uint8Array.of(224, 0, 0, 1);
/** 255.255.255.255, the limited broadcast address. */
export const IPV4_BROADCAST: Address = Uint8Array.of(255, 255, 255, 255);
/** :: */
export const IPV6_UNSPECIFIED: Address = v6Words(0, 0, 0, 0, 0, 0, 0, 0);
/** ::1 */
export const IPV6_LOOPBACK: Address = v6Words(0, 0, 0, 0, 0, 0, 0, 1);
/** ff02::1, link-local all-nodes (RFC 4291 §2.7.1). */
export const IPV6_ALL_NODES_MULTICAST: Address = v6Words(0xff02, 0, 0, 0, 0, 0, 0, 1);
/** ff02::2, link-local all-routers. */
export const IPV6_ALL_ROUTERS_MULTICAST: Address = v6Words(0xff02, 0, 0, 0, 0, 0, 0, 2);

/** An IPv6 address from its eight 16-bit groups. */
function v6Words(...words: number[]): Address {
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >>> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/** A copy of the `length` address bytes at `offset` (a byte loop: slice() of 4 or 16 bytes costs more). */
export function addressCopyAt(bytes: Uint8Array, offset: number, length: number): Address {
  const a = new Uint8Array(length);
  for (let i = 0; i < length; i++) a[i] = bytes[offset + i];
  return a;
}

export function isIPv4(a: Address): boolean {
  return a.length === 4;
}

export function isIPv6(a: Address): boolean {
  return a.length === 16;
}

export function addressEquals(a: Address, b: Address): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A string that identifies the address, for Map/Set keys: one latin1 character per byte, so
 * building it is cheap and IPv4 and IPv6 keys never collide (their lengths differ).
 */
export function addressKey(a: Address): string {
  if (a.length === 4) return String.fromCharCode(a[0], a[1], a[2], a[3]);
  let s = "";
  for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Classification

export function isV4Unspecified(a: Address): boolean {
  return a.length === 4 && a[0] === 0 && a[1] === 0 && a[2] === 0 && a[3] === 0;
}

export function isV4Broadcast(a: Address): boolean {
  return a.length === 4 && a[0] === 255 && a[1] === 255 && a[2] === 255 && a[3] === 255;
}

/** 224.0.0.0/4 */
export function isV4Multicast(a: Address): boolean {
  return a.length === 4 && (a[0] & 0xf0) === 0xe0;
}

/** 127.0.0.0/8 (RFC 1122 §3.2.1.3) */
export function isV4Loopback(a: Address): boolean {
  return a.length === 4 && a[0] === 127;
}

export function isV6Unspecified(a: Address): boolean {
  if (a.length !== 16) return false;
  for (let i = 0; i < 16; i++) if (a[i] !== 0) return false;
  return true;
}

export function isV6Loopback(a: Address): boolean {
  if (a.length !== 16) return false;
  for (let i = 0; i < 15; i++) if (a[i] !== 0) return false;
  return a[15] === 1;
}

/** ff00::/8 */
export function isV6Multicast(a: Address): boolean {
  return a.length === 16 && a[0] === 0xff;
}

/** A unicast address outside the loopback range: not unspecified, loopback, multicast or broadcast. */
export function isUnicastOutsideLoopback(a: Address): boolean {
  return isIPv4(a)
    ? !(isV4Unspecified(a) || isV4Loopback(a) || isV4Multicast(a) || isV4Broadcast(a))
    : !(isV6Unspecified(a) || isV6Loopback(a) || isV6Multicast(a));
}

/** fe80::/10 */
export function isV6LinkLocalUnicast(a: Address): boolean {
  return a.length === 16 && a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
}

/** ff02::/16 */
export function isV6LinkLocalMulticast(a: Address): boolean {
  return a.length === 16 && a[0] === 0xff && a[1] === 0x02;
}

/** The solicited-node multicast group of `a` (RFC 4291 §2.7.1): ff02::1:ff00:0/104 + low 24 bits. */
export function solicitedNodeMulticast(a: Address): Address {
  if (a.length !== 16) throw new RangeError(`not an IPv6 address: ${a.length} bytes`);
  const out = new Uint8Array(16);
  out[0] = 0xff;
  out[1] = 0x02;
  out[11] = 0x01;
  out[12] = 0xff;
  out[13] = a[13];
  out[14] = a[14];
  out[15] = a[15];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text

const DECIMAL_OCTET = /^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses a dotted quad into `out` at `at`; leading zeros are refused (they read as octal to some). */
function parseDottedQuad(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    if (!DECIMAL_OCTET.test(parts[i])) return false;
    out[at + i] = Number(parts[i]);
  }
  return true;
}

/** Parses hex groups (the last may be a dotted quad when `allowV4`) into 16-bit words. */
function parseGroups(text: string, allowV4: boolean): number[] | null {
  if (text === "") return [];
  const parts = text.split(":");
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (allowV4 && i === parts.length - 1 && p.includes(".")) {
      const v4 = new Uint8Array(4);
      if (!parseDottedQuad(p, v4, 0)) return null;
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (HEX_GROUP.test(p)) {
      words.push(Number.parseInt(p, 16));
    } else {
      return null;
    }
  }
  return words;
}

function parseIPv6(text: string): Address | null {
  const gap = text.indexOf("::");
  let words: number[];
  if (gap < 0) {
    const all = parseGroups(text, true);
    if (all === null || all.length !== 8) return null;
    words = all;
  } else {
    if (text.indexOf("::", gap + 1) >= 0) return null;
    const head = parseGroups(text.slice(0, gap), false);
    const tail = parseGroups(text.slice(gap + 2), true);
    // "::" stands for at least one zero group (RFC 4291 §2.2, 2.)
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return v6Words(...words);
}

/**
 * Parses an IPv4 dotted quad or an IPv6 address in any RFC 4291 §2.2 form (`::`, embedded
 * IPv4 such as `::ffff:198.18.0.1`). Zones (`%eth0`), brackets, prefixes and whitespace are
 * refused: an address here names a host, never an interface.
 */
export function parseAddress(text: string): Address | null {
  if (text.includes(":")) return parseIPv6(text);
  const out = new Uint8Array(4);
  return parseDottedQuad(text, out, 0) ? out : null;
}

/** An IPv4-mapped IPv6 address, ::ffff:0:0/96 (RFC 4291 §2.5.5.2); `a` is 16 bytes. */
export function isV4Mapped(a: Address): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/**
 * IPv4 as a dotted quad; IPv6 in the RFC 5952 canonical form: lowercase, no leading zeros,
 * the longest run of two or more zero groups (the first on a tie) as `::`, and IPv4-mapped
 * addresses in mixed notation (`::ffff:198.18.0.1`, RFC 5952 §5).
 */
export function formatAddress(a: Address): string {
  if (a.length === 4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  if (a.length !== 16) throw new RangeError(`not an IP address: ${a.length} bytes`);
  if (isV4Mapped(a)) return `::ffff:${a[12]}.${a[13]}.${a[14]}.${a[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((a[i] << 8) | a[i + 1]);
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return words.map((w) => w.toString(16)).join(":");
  const head = words.slice(0, bestStart).map((w) => w.toString(16));
  const tail = words.slice(bestStart + bestLen).map((w) => w.toString(16));
  return `${head.join(":")}::${tail.join(":")}`;
}

/** Parses `address/prefix`, keeping the host bits ("198.18.0.2/24" for an interface). */
export function parseAddressWithPrefix(
  text: string,
): { address: Address; prefixLength: number } | null {
  const slash = text.indexOf("/");
  if (slash < 0) return null;
  const address = parseAddress(text.slice(0, slash));
  if (address === null) return null;
  const prefixText = text.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefixText)) return null;
  const prefixLength = Number(prefixText);
  if (prefixLength > address.length * 8) return null;
  return { address, prefixLength };
}

// ---------------------------------------------------------------------------------------------
// Subnets

/** An address prefix, as gVisor's `tcpip.Subnet`. The stored address has its host bits zero. */
export class Subnet {
  readonly address: Address;
  readonly prefixLength: number;

  /** Copies `address` with its host bits cleared; throws RangeError on a bad prefix length. */
  constructor(address: Address, prefixLength: number) {
    if (address.length !== 4 && address.length !== 16) {
      throw new RangeError(`not an IP address: ${address.length} bytes`);
    }
    const bits = address.length * 8;
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
      throw new RangeError(`prefix length ${prefixLength} is outside 0..${bits}`);
    }
    const masked = new Uint8Array(address);
    for (let i = 0; i < masked.length; i++) masked[i] &= maskByte(prefixLength, i);
    this.address = masked;
    this.prefixLength = prefixLength;
  }

  /** Parses `address/prefix`; host bits are cleared ("198.18.0.2/24" is 198.18.0.0/24). */
  static parse(text: string): Subnet | null {
    const p = parseAddressWithPrefix(text);
    return p === null ? null : new Subnet(p.address, p.prefixLength);
  }

  /** Whether `a` is of the same family and its first `prefixLength` bits match. */
  contains(a: Address): boolean {
    if (a.length !== this.address.length) return false;
    for (let i = 0; i < a.length; i++) {
      const m = maskByte(this.prefixLength, i);
      if (m === 0) return true;
      if ((a[i] & m) !== this.address[i]) return false;
    }
    return true;
  }

  /** The netmask as an address (255.255.255.0 for a /24). */
  mask(): Address {
    const out = new Uint8Array(this.address.length);
    for (let i = 0; i < out.length; i++) out[i] = maskByte(this.prefixLength, i);
    return out;
  }

  /** The subnet's address with every host bit set: the IPv4 directed broadcast address. */
  broadcast(): Address {
    const out = new Uint8Array(this.address);
    for (let i = 0; i < out.length; i++) out[i] |= ~maskByte(this.prefixLength, i) & 0xff;
    return out;
  }

  equals(other: Subnet): boolean {
    return this.prefixLength === other.prefixLength && addressEquals(this.address, other.address);
  }

  toString(): string {
    return `${formatAddress(this.address)}/${this.prefixLength}`;
  }
}

/** The mask byte at index `i` of a `prefixLength`-bit prefix. */
function maskByte(prefixLength: number, i: number): number {
  const bits = prefixLength - i * 8;
  if (bits >= 8) return 0xff;
  if (bits <= 0) return 0;
  return (0xff << (8 - bits)) & 0xff;
}
