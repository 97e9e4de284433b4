/** Small builders for the packets unit tests inject, through the header package's encoders. */
import { type Address, parseAddress } from "../../src/netstack/address.js";
import { checksumUpdate16 } from "../../src/netstack/header/checksum.js";
import {
  encodeICMPv4Echo,
  ICMPV4_ECHO,
  ICMPV4_MIN_SIZE,
} from "../../src/netstack/header/icmpv4.js";
import { encodeICMPv6Echo, ICMPV6_ECHO_REQUEST } from "../../src/netstack/header/icmpv6.js";
import { encodeIPv4, IPV4_FLAG_DF } from "../../src/netstack/header/ipv4.js";
import { encodeIPv6, IPV6_MIN_SIZE } from "../../src/netstack/header/ipv6.js";

export function addr(text: string): Address {
  const a = parseAddress(text);
  if (a === null) throw new Error(`bad address in test: ${text}`);
  return a;
}

export function payloadOf(length: number, fill?: number): Uint8Array {
  const p = new Uint8Array(length);
  for (let i = 0; i < length; i++) p[i] = fill ?? i & 0xff;
  return p;
}

export interface V4EchoOptions {
  src?: string;
  dst?: string;
  ttl?: number;
  tos?: number;
  id?: number;
  flags?: number;
  protocol?: number;
  type?: number;
  code?: number;
  ident?: number;
  sequence?: number;
  payload?: Uint8Array;
  options?: Uint8Array;
}

/** An IPv4 Echo Request from the kernel side (198.18.0.1) to the netstack (198.18.0.2). */
export function v4Echo(o: V4EchoOptions = {}): Uint8Array {
  const payload = o.payload ?? payloadOf(56);
  const optLen = o.options ? Math.ceil(o.options.length / 4) * 4 : 0;
  const ihl = 20 + optLen;
  const buf = new Uint8Array(ihl + ICMPV4_MIN_SIZE + payload.length);
  encodeIPv4(buf, 0, {
    tos: o.tos ?? 0,
    totalLength: buf.length,
    id: o.id ?? 0x1234,
    flags: o.flags ?? IPV4_FLAG_DF,
    fragmentOffset: 0,
    ttl: o.ttl ?? 64,
    protocol: o.protocol ?? 1,
    srcAddr: addr(o.src ?? "198.18.0.1"),
    dstAddr: addr(o.dst ?? "198.18.0.2"),
    options: o.options,
  });
  encodeICMPv4Echo(buf, ihl, {
    type: o.type ?? ICMPV4_ECHO,
    code: o.code ?? 0,
    ident: o.ident ?? 0x4242,
    sequence: o.sequence ?? 1,
    payload,
  });
  return buf;
}

export interface V6EchoOptions {
  src?: string;
  dst?: string;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  nextHeader?: number;
  type?: number;
  code?: number;
  ident?: number;
  sequence?: number;
  payload?: Uint8Array;
}

/** An ICMPv6 Echo Request from fd00:1::1 to the netstack's fd00:1::2. */
export function v6Echo(o: V6EchoOptions = {}): Uint8Array {
  const payload = o.payload ?? payloadOf(56);
  const src = addr(o.src ?? "fd00:1::1");
  const dst = addr(o.dst ?? "fd00:1::2");
  const buf = new Uint8Array(IPV6_MIN_SIZE + 8 + payload.length);
  encodeIPv6(buf, 0, {
    trafficClass: o.trafficClass ?? 0,
    flowLabel: o.flowLabel ?? 0x12345,
    payloadLength: 8 + payload.length,
    nextHeader: o.nextHeader ?? 58,
    hopLimit: o.hopLimit ?? 64,
    srcAddr: src,
    dstAddr: dst,
  });
  encodeICMPv6Echo(
    buf,
    IPV6_MIN_SIZE,
    {
      type: o.type ?? ICMPV6_ECHO_REQUEST,
      code: o.code ?? 0,
      ident: o.ident ?? 0x4242,
      sequence: o.sequence ?? 1,
      payload,
    },
    src,
    dst,
  );
  return buf;
}

/**
 * Turns an IPv4 Echo Request into its Echo Reply in place, as a bare responder does: addresses
 * swapped (the IP header checksum stays as it was), type 8 → 0, the ICMP checksum updated
 * (RFC 1624). False, and the bytes untouched, for anything else.
 */
export function answerIPv4EchoInPlace(p: Uint8Array): boolean {
  if (p.length < 20 || p[0] >> 4 !== 4 || p[9] !== 1) return false;
  const icmp = (p[0] & 0x0f) * 4;
  if (p.length < icmp + 8 || p[icmp] !== ICMPV4_ECHO) return false;
  for (let k = 0; k < 4; k++) {
    const t = p[12 + k];
    p[12 + k] = p[16 + k];
    p[16 + k] = t;
  }
  const code = p[icmp + 1];
  const c = checksumUpdate16((p[icmp + 2] << 8) | p[icmp + 3], (ICMPV4_ECHO << 8) | code, code);
  p[icmp] = 0;
  p[icmp + 2] = c >>> 8;
  p[icmp + 3] = c & 0xff;
  return true;
}
