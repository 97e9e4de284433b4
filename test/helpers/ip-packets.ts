/**
 * Builders and readers for the IP-fidelity tests: IPv6 packets with extension header chains,
 * IPv4 datagrams of any protocol with raw options, and parsed ICMP errors.
 */
import { checksum, pseudoHeaderChecksum } from "../../src/netstack/header/checksum.js";
import { encodeICMPv6Echo, ICMPV6_ECHO_REQUEST } from "../../src/netstack/header/icmpv6.js";
import { encodeIPv4, IPV4_FLAG_DF, IPv4Header } from "../../src/netstack/header/ipv4.js";
import { encodeIPv6, IPV6_MIN_SIZE, IPv6Header } from "../../src/netstack/header/ipv6.js";
import { addr, payloadOf } from "./packets.js";

/** One extension header: its identifier and the bytes after Next Header (length octet included). */
export interface ExtensionHeader {
  id: number;
  /** Bytes from the Hdr Ext Len octet on; the Next Header octet is filled in. */
  body: Uint8Array;
}

/** A Hop-by-Hop or Destination Options header holding `options`, padded with PadN / Pad1. */
export function optionsHeader(id: number, options: readonly number[]): ExtensionHeader {
  const used = 2 + options.length;
  const total = Math.ceil(used / 8) * 8;
  const body = new Uint8Array(total - 1);
  body[0] = total / 8 - 1;
  body.set(options, 1);
  const pad = total - used;
  if (pad === 1) body[1 + options.length] = 0;
  else if (pad > 1) {
    body[1 + options.length] = 1;
    body[2 + options.length] = pad - 2;
  }
  return { id, body };
}

/** A Routing header of `type` with `segmentsLeft` and one address slot (24 bytes). */
export function routingHeader(type: number, segmentsLeft: number): ExtensionHeader {
  const body = new Uint8Array(23);
  body[0] = 2;
  body[1] = type;
  body[2] = segmentsLeft;
  return { id: 43, body };
}

/** A Fragment header (8 bytes) with the offset in bytes, the M flag and the identification. */
export function fragmentHeader(offset: number, more: boolean, id = 0x1234): ExtensionHeader {
  const body = new Uint8Array(7);
  const v = (offset & ~7) | (more ? 1 : 0);
  body[1] = v >>> 8;
  body[2] = v & 0xff;
  body[3] = id >>> 24;
  body[4] = id >>> 16;
  body[5] = id >>> 8;
  body[6] = id;
  return { id: 44, body };
}

export interface V6ChainOptions {
  src?: string;
  dst?: string;
  headers?: readonly ExtensionHeader[];
  /** The Next Header value after the chain (58 by default: an ICMPv6 Echo Request follows). */
  upper?: number;
  /** The upper-layer bytes; by default an Echo Request with a 16-byte payload. */
  upperBytes?: Uint8Array;
  type?: number;
  sequence?: number;
  trafficClass?: number;
}

/** An IPv6 packet from fd00:1::1 to fd00:1::2 with an extension header chain. */
export function v6Chain(o: V6ChainOptions = {}): Uint8Array {
  const src = addr(o.src ?? "fd00:1::1");
  const dst = addr(o.dst ?? "fd00:1::2");
  const headers = o.headers ?? [];
  const upper = o.upper ?? 58;
  const chainLength = headers.reduce((n, h) => n + 1 + h.body.length, 0);
  const icmpLength = o.upperBytes?.length ?? 8 + 16;
  const buf = new Uint8Array(IPV6_MIN_SIZE + chainLength + icmpLength);
  encodeIPv6(buf, 0, {
    trafficClass: o.trafficClass ?? 0,
    flowLabel: 0,
    payloadLength: chainLength + icmpLength,
    nextHeader: headers.length > 0 ? headers[0].id : upper,
    hopLimit: 64,
    srcAddr: src,
    dstAddr: dst,
  });
  let off = IPV6_MIN_SIZE;
  headers.forEach((h, i) => {
    buf[off] = i + 1 < headers.length ? headers[i + 1].id : upper;
    buf.set(h.body, off + 1);
    off += 1 + h.body.length;
  });
  if (o.upperBytes !== undefined) buf.set(o.upperBytes, off);
  else
    encodeICMPv6Echo(
      buf,
      off,
      {
        type: o.type ?? ICMPV6_ECHO_REQUEST,
        code: 0,
        ident: 0x4242,
        sequence: o.sequence ?? 1,
        payload: payloadOf(16),
      },
      src,
      dst,
    );
  if (upper === 58 && o.upperBytes !== undefined && o.upperBytes.length >= 4) {
    const msg = buf.subarray(off);
    msg[2] = 0;
    msg[3] = 0;
    const c = ~checksum(msg, pseudoHeaderChecksum(58, src, dst, msg.length)) & 0xffff;
    msg[2] = c >> 8;
    msg[3] = c & 0xff;
  }
  return buf;
}

export interface V4DatagramOptions {
  src?: string;
  dst?: string;
  protocol: number;
  payload?: Uint8Array;
  options?: Uint8Array;
  fragmentOffset?: number;
  flags?: number;
}

/** An IPv4 datagram of any protocol from 198.18.0.1 to 198.18.0.2. */
export function v4Datagram(o: V4DatagramOptions): Uint8Array {
  const payload = o.payload ?? payloadOf(16);
  const optLen = o.options ? Math.ceil(o.options.length / 4) * 4 : 0;
  const buf = new Uint8Array(20 + optLen + payload.length);
  encodeIPv4(buf, 0, {
    tos: 0,
    totalLength: buf.length,
    id: 0x2345,
    flags: o.flags ?? IPV4_FLAG_DF,
    fragmentOffset: o.fragmentOffset ?? 0,
    ttl: 64,
    protocol: o.protocol,
    srcAddr: addr(o.src ?? "198.18.0.1"),
    dstAddr: addr(o.dst ?? "198.18.0.2"),
    options: o.options,
  });
  buf.set(payload, 20 + optLen);
  return buf;
}

/** An ICMP error as the stack wrote it: the outer header fields and the quoted datagram. */
export interface ParsedICMPError {
  src: Uint8Array;
  dst: Uint8Array;
  ttl: number;
  tos: number;
  type: number;
  code: number;
  /** IPv4: byte 4; IPv6: the 32-bit field. */
  pointer: number;
  quoted: Uint8Array;
  checksumOk: boolean;
}

export function parseICMPv4Error(bytes: Uint8Array): ParsedICMPError {
  const ip = new IPv4Header(bytes);
  const msg = bytes.subarray(ip.ihl, ip.totalLength);
  return {
    src: ip.sourceAddress.slice(),
    dst: ip.destinationAddress.slice(),
    ttl: ip.ttl,
    tos: ip.tos,
    type: msg[0],
    code: msg[1],
    pointer: msg[4],
    quoted: msg.slice(8),
    checksumOk: checksum(msg) === 0xffff && ip.isChecksumValid(),
  };
}

export function parseICMPv6Error(bytes: Uint8Array): ParsedICMPError {
  const ip = new IPv6Header(bytes);
  const msg = bytes.subarray(IPV6_MIN_SIZE);
  const pseudo = pseudoHeaderChecksum(58, ip.sourceAddress, ip.destinationAddress, msg.length);
  return {
    src: ip.sourceAddress.slice(),
    dst: ip.destinationAddress.slice(),
    ttl: ip.hopLimit,
    tos: ip.trafficClass,
    type: msg[0],
    code: msg[1],
    pointer: ((msg[4] << 24) | (msg[5] << 16) | (msg[6] << 8) | msg[7]) >>> 0,
    quoted: msg.slice(8),
    checksumOk: checksum(msg, pseudo) === 0xffff,
  };
}
