/**
 * The relay's ICMP bytes: the Echo Request it sends, and what a received message says about one
 * of its probes — an Echo Reply, or a router's error found by the Echo header it quotes.
 */
import type { SyntheticErrorName } from "../types.js";

const V4_ECHO_REPLY = 0;
const V4_DST_UNREACH = 3;
const V4_ECHO_REQUEST = 8;
const V4_TIME_EXCEEDED = 11;
const V6_DST_UNREACH = 1;
const V6_TIME_EXCEEDED = 3;
const V6_PARAM_PROBLEM = 4;
const V6_ECHO_REQUEST = 128;
const V6_ECHO_REPLY = 129;
const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;

/** What one received message says about a probe (ident and sequence are the probe's). */
export type ProbeMessage =
  | { kind: "reply"; ident: number; sequence: number }
  | { kind: "error"; error: SyntheticErrorName; ident: number; sequence: number };

/** The Internet checksum (RFC 1071). */
export function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i] << 8) | b[i + 1];
  if (b.length % 2 === 1) sum += b[b.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * An Echo Request. The IPv6 checksum is the kernel's (it fills it for every ICMPv6 socket); the
 * IPv4 one is computed here (a datagram socket's kernel rewrites it with the ident anyway).
 */
export function echoRequest(
  v6: boolean,
  ident: number,
  sequence: number,
  payload: Uint8Array,
): Uint8Array {
  const b = new Uint8Array(8 + payload.length);
  const view = new DataView(b.buffer);
  b[0] = v6 ? V6_ECHO_REQUEST : V4_ECHO_REQUEST;
  view.setUint16(4, ident);
  view.setUint16(6, sequence);
  b.set(payload, 8);
  if (!v6) view.setUint16(2, checksum(b));
  return b;
}

/** The error an ICMP type and code mean, as the service names it; null when none we relay. */
export function errorOf(v6: boolean, type: number, code: number): SyntheticErrorName | null {
  if (!v6) {
    if (type === V4_TIME_EXCEEDED) return code === 0 ? "time-exceeded" : null;
    if (type !== V4_DST_UNREACH) return null;
    if (code === 0 || code === 6 || code === 11) return "net-unreachable"; // net, unknown, TOS
    if (code === 2) return "protocol-unreachable";
    if (code === 3) return "port-unreachable";
    if (code === 9 || code === 10 || code === 13) return "admin-prohibited";
    return "host-unreachable";
  }
  if (type === V6_TIME_EXCEEDED) return code === 0 ? "time-exceeded" : null;
  // Unrecognized Next Header: the destination does not speak ICMPv6.
  if (type === V6_PARAM_PROBLEM) return code === 1 ? "protocol-unreachable" : null;
  if (type !== V6_DST_UNREACH) return null;
  if (code === 0) return "net-unreachable"; // no route to destination
  // Administratively prohibited, failed ingress/egress policy, reject route.
  if (code === 1 || code === 5 || code === 6) return "admin-prohibited";
  if (code === 4) return "port-unreachable";
  return "host-unreachable";
}

/** The ICMP part of what a raw IPv4 socket read (it delivers the IP header); null if malformed. */
export function stripIpv4Header(b: Uint8Array): Uint8Array | null {
  if (b.length < 20 || b[0] >> 4 !== 4) return null;
  const ihl = (b[0] & 0x0f) * 4;
  return ihl < 20 || b.length < ihl ? null : b.subarray(ihl);
}

/**
 * The Echo Request an error quotes, after its IP header (IPv6: past extension headers; only a
 * first fragment carries the Echo header); null when it quotes something else.
 */
export function quotedEcho(q: Uint8Array, v6: boolean): Uint8Array | null {
  let inner: Uint8Array;
  if (!v6) {
    if (q.length < 20 || q[0] >> 4 !== 4 || q[9] !== PROTO_ICMP) return null;
    const ihl = (q[0] & 0x0f) * 4;
    if (ihl < 20 || q.length < ihl + 8) return null;
    inner = q.subarray(ihl);
  } else {
    if (q.length < 40 || q[0] >> 4 !== 6) return null;
    let next = q[6];
    let off = 40;
    while (next !== PROTO_ICMPV6) {
      if (q.length < off + 8) return null;
      if (next === 0 || next === 43 || next === 60) {
        // hop-by-hop, routing, destination options
        [next, off] = [q[off], off + (q[off + 1] + 1) * 8];
      } else if (next === 44) {
        if ((((q[off + 2] << 8) | q[off + 3]) & ~7) !== 0) return null;
        [next, off] = [q[off], off + 8];
      } else {
        return null;
      }
    }
    if (q.length < off + 8) return null;
    inner = q.subarray(off);
  }
  return echoHeader(inner, v6);
}

/** `b` when it starts with an Echo Request header of this family, else null. */
function echoHeader(b: Uint8Array, v6: boolean): Uint8Array | null {
  return b.length >= 8 && b[0] === (v6 ? V6_ECHO_REQUEST : V4_ECHO_REQUEST) ? b : null;
}

const be16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];

/** An ordinary ICMP message (no IP header): an Echo Reply, or an error quoting a probe. */
export function parseMessage(b: Uint8Array, v6: boolean): ProbeMessage | null {
  if (b.length < 8) return null;
  if (b[0] === (v6 ? V6_ECHO_REPLY : V4_ECHO_REPLY)) {
    return { kind: "reply", ident: be16(b, 4), sequence: be16(b, 6) };
  }
  const error = errorOf(v6, b[0], b[1]);
  const echo = error === null ? null : quotedEcho(b.subarray(8), v6);
  if (error === null || echo === null) return null;
  return { kind: "error", error, ident: be16(echo, 4), sequence: be16(echo, 6) };
}

/**
 * A message from a datagram socket's error queue: the kernel parsed the error (type, code) and
 * hands over the quoted request from its ICMP header on.
 */
export function parseQueuedError(
  quoted: Uint8Array,
  v6: boolean,
  type: number,
  code: number,
): ProbeMessage | null {
  const error = errorOf(v6, type, code);
  const echo = error === null ? null : echoHeader(quoted, v6);
  if (error === null || echo === null) return null;
  return { kind: "error", error, ident: be16(echo, 4), sequence: be16(echo, 6) };
}
