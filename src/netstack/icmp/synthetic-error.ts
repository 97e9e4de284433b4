/**
 * ICMP errors a proxy sends for a request it consumed earlier, from the address of the router
 * (or host) on the real path that sent one: Time Exceeded, so `traceroute -I` through a tunnel
 * shows the real hops, and Destination Unreachable. Built the way the stack builds its own
 * errors (ipv4/errors.ts, ipv6/errors.ts): the request's IP header and as much of the datagram
 * as fits in 576 (IPv4) / 1280 (IPv6) bytes, the stack's default TTL, the ICMP rate limiter;
 * routed like a reply from a temporary address (the source is not the stack's own).
 */
import {
  type Address,
  isIPv4,
  isV4Broadcast,
  isV4Loopback,
  isV4Mapped,
  isV4Multicast,
  isV4Unspecified,
  isV6Loopback,
  isV6Multicast,
  isV6Unspecified,
} from "../address.js";
import { IPV4_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER } from "../buffer.js";
import { isTcpipError, type TcpipError, tcpipError } from "../errors.js";
import {
  ICMPV4_ADMIN_PROHIBITED,
  ICMPV4_DST_UNREACHABLE,
  ICMPV4_HOST_UNREACHABLE,
  ICMPV4_MIN_SIZE,
  ICMPV4_NET_UNREACHABLE,
  ICMPV4_PORT_UNREACHABLE,
  ICMPV4_PROTO_UNREACHABLE,
  ICMPV4_TIME_EXCEEDED,
  ICMPV4_TTL_EXCEEDED,
} from "../header/icmpv4.js";
import {
  ICMPV6_ADDRESS_UNREACHABLE,
  ICMPV6_ADMIN_PROHIBITED,
  ICMPV6_DST_UNREACHABLE,
  ICMPV6_HOP_LIMIT_EXCEEDED,
  ICMPV6_MIN_SIZE,
  ICMPV6_NO_ROUTE,
  ICMPV6_PARAM_PROBLEM,
  ICMPV6_PORT_UNREACHABLE,
  ICMPV6_TIME_EXCEEDED,
  ICMPV6_UNKNOWN_NEXT_HEADER,
} from "../header/icmpv6.js";
import { IPV4_MIN_SIZE } from "../header/ipv4.js";
import { IPV6_MIN_MTU, IPV6_MIN_SIZE } from "../header/ipv6.js";
import { ipv6ExtensionHeaderLength } from "../header/ipv6-extension-headers.js";
import type { ProtocolStack } from "../protocol.js";
import type { EchoRequestCopy } from "./synthetic.js";

export const SYNTHETIC_ERROR_KINDS = [
  "timeExceeded",
  "netUnreachable",
  "hostUnreachable",
  "protocolUnreachable",
  "portUnreachable",
  "adminProhibited",
] as const;
export type SyntheticErrorKind = (typeof SYNTHETIC_ERROR_KINDS)[number];

export interface SyntheticErrorOptions {
  readonly kind: SyntheticErrorKind;
  /** The router's (or host's) address: the error's IP source. */
  readonly source: Address;
}

/** RFC 1812 §4.3.2.3: an ICMPv4 error datagram stays within 576 bytes. */
const IPV4_ERROR_DATAGRAM_LIMIT = 576;

/** Type and code of each kind, per family (ICMPv6 has no Protocol Unreachable: RFC 4443 §4.2). */
const V4: Record<SyntheticErrorKind, readonly [type: number, code: number]> = {
  timeExceeded: [ICMPV4_TIME_EXCEEDED, ICMPV4_TTL_EXCEEDED],
  netUnreachable: [ICMPV4_DST_UNREACHABLE, ICMPV4_NET_UNREACHABLE],
  hostUnreachable: [ICMPV4_DST_UNREACHABLE, ICMPV4_HOST_UNREACHABLE],
  protocolUnreachable: [ICMPV4_DST_UNREACHABLE, ICMPV4_PROTO_UNREACHABLE],
  portUnreachable: [ICMPV4_DST_UNREACHABLE, ICMPV4_PORT_UNREACHABLE],
  adminProhibited: [ICMPV4_DST_UNREACHABLE, ICMPV4_ADMIN_PROHIBITED],
};
const V6: Record<SyntheticErrorKind, readonly [type: number, code: number]> = {
  timeExceeded: [ICMPV6_TIME_EXCEEDED, ICMPV6_HOP_LIMIT_EXCEEDED],
  netUnreachable: [ICMPV6_DST_UNREACHABLE, ICMPV6_NO_ROUTE],
  hostUnreachable: [ICMPV6_DST_UNREACHABLE, ICMPV6_ADDRESS_UNREACHABLE],
  protocolUnreachable: [ICMPV6_PARAM_PROBLEM, ICMPV6_UNKNOWN_NEXT_HEADER],
  portUnreachable: [ICMPV6_DST_UNREACHABLE, ICMPV6_PORT_UNREACHABLE],
  adminProhibited: [ICMPV6_DST_UNREACHABLE, ICMPV6_ADMIN_PROHIBITED],
};

/** Why `source` cannot be an error's source for this request; null when it can. */
export function syntheticErrorSourceProblem(
  stack: ProtocolStack,
  req: EchoRequestCopy,
  source: Address,
): string | null {
  const v4 = req.family === "ipv4";
  if (isIPv4(source) !== v4) return `not an ${v4 ? "IPv4" : "IPv6"} address, as the request is`;
  const notUnicast = v4
    ? isV4Unspecified(source) ||
      isV4Multicast(source) ||
      isV4Broadcast(source) ||
      isV4Loopback(source)
    : isV6Unspecified(source) ||
      isV6Multicast(source) ||
      isV6Loopback(source) ||
      isV4Mapped(source);
  if (notUnicast) return "not a unicast address";
  if (stack.ownsAddress(source)) return "one of the netstack's own addresses";
  return null;
}

/**
 * Sends an ICMP error about a consumed request, from `options.source`, to the request's
 * source. Counted in the stack's ICMP sent stats (timeExceeded, dstUnreachable, paramProblem,
 * or why nothing went out); returns a typed error instead of failing silently.
 */
export function sendSyntheticError(
  stack: ProtocolStack,
  req: EchoRequestCopy,
  options: SyntheticErrorOptions,
): TcpipError | null {
  const problem = syntheticErrorSourceProblem(stack, req, options.source);
  if (problem !== null) return tcpipError("badAddress", `source: ${problem}`);
  const v4 = req.family === "ipv4";
  const proto = v4 ? IPV4_PROTOCOL_NUMBER : IPV6_PROTOCOL_NUMBER;
  const sent = v4 ? stack.stats.icmp.v4.packetsSent : stack.stats.icmp.v6.packetsSent;
  const route = stack.findRoute(req.nicId, options.source, req.source, proto, {
    allowUnassignedLocal: true,
  });
  if (isTcpipError(route)) {
    sent.noRoute++;
    return route;
  }
  const [type, code] = (v4 ? V4 : V6)[options.kind];
  if (!stack.allowICMPReply(proto, type)) {
    sent.rateLimited++;
    return tcpipError("rateLimited", "the ICMP rate limiter refused the error");
  }
  const ipHeaderSize = v4 ? IPV4_MIN_SIZE : IPV6_MIN_SIZE;
  const datagramLimit = v4 ? IPV4_ERROR_DATAGRAM_LIMIT : IPV6_MIN_MTU;
  const available =
    Math.min(route.mtu, datagramLimit) - ipHeaderSize - (v4 ? ICMPV4_MIN_SIZE : ICMPV6_MIN_SIZE);
  const header = req.networkHeader;
  const quoted = Math.min(header.length + req.icmp.length, available);
  const message = new Uint8Array((v4 ? ICMPV4_MIN_SIZE : ICMPV6_MIN_SIZE) + quoted);
  message[0] = type;
  message[1] = code;
  if (!v4 && options.kind === "protocolUnreachable") {
    // RFC 4443 §3.4: the pointer names the Next Header field that carried the unknown value.
    const pointer = lastNextHeaderOffset(header);
    message[4] = pointer >>> 24;
    message[5] = pointer >>> 16;
    message[6] = pointer >>> 8;
    message[7] = pointer;
  }
  const quote = message.subarray(ICMPV4_MIN_SIZE);
  quote.set(header.subarray(0, Math.min(header.length, quoted)));
  if (quoted > header.length)
    quote.set(req.icmp.subarray(0, quoted - header.length), header.length);
  if (route.writeICMP(message, 0) !== null) {
    sent.dropped++;
    return tcpipError("closedForSend", "the link refused the error");
  }
  if (type === (v4 ? ICMPV4_TIME_EXCEEDED : ICMPV6_TIME_EXCEEDED)) sent.timeExceeded++;
  else if (!v4 && type === ICMPV6_PARAM_PROBLEM) sent.paramProblem++;
  else sent.dstUnreachable++;
  return null;
}

/** Offset of the Next Header field that names the upper layer in an IPv6 header chain. */
function lastNextHeaderOffset(header: Uint8Array): number {
  const nextHeaderField = 6;
  let field = nextHeaderField;
  let next = header[nextHeaderField];
  let offset = IPV6_MIN_SIZE;
  while (offset < header.length) {
    const length = ipv6ExtensionHeaderLength(header, offset, header.length, next);
    if (length <= 0) break;
    field = offset;
    next = header[offset];
    offset += length;
  }
  return field;
}
