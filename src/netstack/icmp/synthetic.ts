import { type Address, isIPv4, isV4Multicast, isV6Multicast } from "../address.js";
import { IPV4_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER, type PacketBuffer } from "../buffer.js";
import { isTcpipError, type TcpipError, tcpipError } from "../errors.js";
import { ICMP_ECHO_HEADER_SIZE } from "../header/icmp-message.js";
import { ICMPV4_ECHO, ICMPV4_ECHO_REPLY } from "../header/icmpv4.js";
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST } from "../header/icmpv6.js";
import { IPv4Header } from "../header/ipv4.js";
import { IPv6Header } from "../header/ipv6.js";
import type { ProtocolStack } from "../protocol.js";
import type { ForwarderRequest } from "./forwarder.js";

/**
 * What a proxy keeps of an Echo Request to answer it later (the seed's proxyICMPEchoRequest):
 * plain copies, valid after the request has ended.
 */
export interface EchoRequestCopy {
  readonly nicId: number;
  readonly family: "ipv4" | "ipv6";
  /** The request's IP source: the reply's destination. */
  readonly source: Address;
  /** The request's IP destination: the reply's source (unless broadcast or multicast). */
  readonly destination: Address;
  /** IPv4 TOS / IPv6 traffic class of the request, preserved in the reply. */
  readonly tos: number;
  /** The request's IP header as the stack holds it (IPv4 options, IPv6 extension headers). */
  readonly networkHeader: Uint8Array;
  /** The ICMP Echo message: 8-byte header and payload. */
  readonly icmp: Uint8Array;
  readonly localAddressBroadcast: boolean;
}

/** Copies what a synthetic reply needs; call it inside the handler, while the request is live. */
export function copyEchoRequest(req: ForwarderRequest): EchoRequestCopy | TcpipError {
  let pkt: PacketBuffer;
  try {
    pkt = req.packetBuffer();
  } catch {
    return tcpipError("invalidEndpointState", "the request has ended: copy it inside the handler");
  }
  const v4 = pkt.networkProtocol === IPV4_PROTOCOL_NUMBER;
  const msg = pkt.transportMessage();
  const echoType = v4 ? ICMPV4_ECHO : ICMPV6_ECHO_REQUEST;
  if (msg.length < ICMP_ECHO_HEADER_SIZE || msg[0] !== echoType)
    return tcpipError("invalidEndpointState", "not an Echo Request");
  const id = req.id();
  return {
    nicId: pkt.nicId,
    family: v4 ? "ipv4" : "ipv6",
    source: id.remoteAddress.slice(),
    destination: id.localAddress.slice(),
    tos: v4 ? new IPv4Header(pkt.data).tos : new IPv6Header(pkt.data).trafficClass,
    networkHeader: pkt.networkHeader().slice(),
    icmp: msg.slice(),
    localAddressBroadcast: req.packetInfo().localAddressBroadcast,
  };
}

export interface SyntheticReplyOptions {
  /** Replaces the request's payload (the 8-byte Echo header stays the request's). */
  payload?: Uint8Array;
}

/**
 * Sends an Echo Reply for a request a proxy consumed earlier (the seed's
 * writeSyntheticEchoReply without its caveats): route lookup from the original destination on
 * the request's NIC (an address the NIC does not own is allowed: a temporary address), the ICMP
 * rate limiter, TOS / traffic class preserved, TTL the stack default, counted in the stats.
 * Returns a typed error instead of failing silently.
 */
export function sendSyntheticEchoReply(
  stack: ProtocolStack,
  req: EchoRequestCopy,
  options: SyntheticReplyOptions = {},
): TcpipError | null {
  const v4 = req.family === "ipv4";
  if (req.icmp.length < ICMP_ECHO_HEADER_SIZE)
    return tcpipError("invalidEndpointState", "ICMP Echo message shorter than 8 bytes");
  if (isIPv4(req.source) !== v4 || isIPv4(req.destination) !== v4) {
    return tcpipError("badAddress", "addresses do not match the family");
  }
  const proto = v4 ? IPV4_PROTOCOL_NUMBER : IPV6_PROTOCOL_NUMBER;
  const sent = v4 ? stack.stats.icmp.v4.packetsSent : stack.stats.icmp.v6.packetsSent;
  const groupDestination =
    req.localAddressBroadcast ||
    (v4 ? isV4Multicast(req.destination) : isV6Multicast(req.destination));
  const route = stack.findRoute(
    req.nicId,
    groupDestination ? null : req.destination,
    req.source,
    proto,
    {
      allowUnassignedLocal: true,
    },
  );
  if (isTcpipError(route)) {
    sent.noRoute++;
    return route;
  }
  const replyType = v4 ? ICMPV4_ECHO_REPLY : ICMPV6_ECHO_REPLY;
  if (!stack.allowICMPReply(proto, replyType)) {
    sent.rateLimited++;
    return tcpipError("rateLimited", "the ICMP rate limiter refused the reply");
  }
  const payload = options.payload ?? req.icmp.subarray(ICMP_ECHO_HEADER_SIZE);
  const msg = new Uint8Array(ICMP_ECHO_HEADER_SIZE + payload.length);
  msg.set(req.icmp.subarray(0, ICMP_ECHO_HEADER_SIZE), 0);
  msg.set(payload, ICMP_ECHO_HEADER_SIZE);
  msg[0] = replyType;
  const err = route.writeICMP(msg, req.tos);
  if (err !== null) {
    sent.dropped++;
    return err;
  }
  sent.echoReply++;
  return null;
}
