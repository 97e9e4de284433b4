import { isV6Multicast, isV6Unspecified } from "../address.js";
import { ICMPV6_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER } from "../buffer.js";
import { isTcpipError } from "../errors.js";
import {
  ICMPV6_ECHO_REQUEST,
  ICMPV6_MIN_SIZE,
  ICMPV6_PARAM_PROBLEM,
  ICMPV6_REASSEMBLY_TIMEOUT,
  ICMPV6_REDIRECT,
  ICMPV6_TIME_EXCEEDED,
} from "../header/icmpv6.js";
import { IPV6_MIN_MTU, IPV6_MIN_SIZE, IPv6Header } from "../header/ipv6.js";
import { findIPv6UpperLayer } from "../header/ipv6-extension-headers.js";
import type { NIC } from "../nic.js";
import { type ProtocolStack, replyRouteOptions } from "../protocol.js";

/**
 * Why the stack answers a received packet with an ICMPv6 error (gVisor's icmpReason). Only
 * Parameter Problem is originated here: code 0 (erroneous header field), 1 (unrecognized Next
 * Header), 2 (unrecognized option); `pointer` is the offset of the octet in error.
 */
export interface ICMPv6ParameterProblem {
  readonly kind: "parameterProblem";
  readonly code: number;
  readonly pointer: number;
  /**
   * RFC 4443 §2.4 (e.3) exception 2: an unrecognized option whose high bits are 10 is reported
   * even when the packet went to a multicast address.
   */
  readonly respondToMulticast: boolean;
}

/** RFC 4443 §3.3: Time Exceeded, code 1 — fragment reassembly time exceeded. */
export interface ICMPv6ReassemblyTimeout {
  readonly kind: "reassemblyTimeout";
}

export type ICMPv6ErrorReason = ICMPv6ParameterProblem | ICMPv6ReassemblyTimeout;

/**
 * Answers `packet` (the received IPv6 packet, trimmed to its payload length) with an ICMPv6
 * error, as gVisor's ipv6 returnError does (RFC 4443 §2.4): never for an unspecified source, a
 * multicast destination (except the exception above), or an ICMPv6 error or Redirect; the
 * source is the packet's destination, or for a multicast destination one chosen by source
 * address selection; the route back is on the receiving NIC; then the rate limiter (every type
 * 0–127 but 2 is in the default mask); the error carries as much of the packet as keeps it
 * within the minimum IPv6 MTU.
 */
export function returnICMPv6Error(
  stack: ProtocolStack,
  nic: NIC,
  packet: Uint8Array,
  temporary: boolean,
  reason: ICMPv6ErrorReason,
): void {
  const sent = stack.stats.icmp.v6.packetsSent;
  const h = new IPv6Header(packet);
  const src = h.sourceAddress;
  const dst = h.destinationAddress;
  const multicast = isV6Multicast(dst);
  const respondToMulticast = reason.kind === "parameterProblem" && reason.respondToMulticast;
  if ((multicast && !respondToMulticast) || isV6Unspecified(src)) return;
  const route = stack.findRoute(
    nic.id,
    multicast ? null : dst,
    src,
    IPV6_PROTOCOL_NUMBER,
    replyRouteOptions(temporary),
  );
  if (isTcpipError(route)) {
    sent.noRoute++;
    return;
  }
  const upper = findIPv6UpperLayer(packet, h.nextHeader, IPV6_MIN_SIZE, packet.length);
  if (upper !== null && upper.protocol === ICMPV6_PROTOCOL_NUMBER) {
    // An error never answers an error (types below 128) or a Redirect; a truncated ICMPv6
    // header cannot show its type, so it gets nothing either.
    if (upper.offset >= packet.length) return;
    const type = packet[upper.offset];
    if (type < ICMPV6_ECHO_REQUEST || type === ICMPV6_REDIRECT) return;
  }
  const type = reason.kind === "parameterProblem" ? ICMPV6_PARAM_PROBLEM : ICMPV6_TIME_EXCEEDED;
  if (!stack.allowICMPReply(IPV6_PROTOCOL_NUMBER, type)) {
    sent.rateLimited++;
    return;
  }
  const mtu = Math.min(route.mtu - IPV6_MIN_SIZE, IPV6_MIN_MTU - IPV6_MIN_SIZE);
  const available = mtu - ICMPV6_MIN_SIZE;
  if (available < IPV6_MIN_SIZE) return;
  const payloadLength = Math.min(packet.length, available);
  const message = new Uint8Array(ICMPV6_MIN_SIZE + payloadLength);
  message[0] = type;
  if (reason.kind === "parameterProblem") {
    message[1] = reason.code;
    message[4] = reason.pointer >>> 24;
    message[5] = reason.pointer >>> 16;
    message[6] = reason.pointer >>> 8;
    message[7] = reason.pointer;
  } else {
    message[1] = ICMPV6_REASSEMBLY_TIMEOUT;
  }
  message.set(packet.subarray(0, payloadLength), ICMPV6_MIN_SIZE);
  if (route.writeICMP(message, 0) !== null) {
    sent.dropped++;
    return;
  }
  if (reason.kind === "parameterProblem") sent.paramProblem++;
  else sent.timeExceeded++;
}
