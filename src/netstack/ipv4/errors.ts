import { isV4Multicast, isV4Unspecified } from "../address.js";
import { ICMPV4_PROTOCOL_NUMBER, IPV4_PROTOCOL_NUMBER } from "../buffer.js";
import { isTcpipError } from "../errors.js";
import {
  ICMPV4_DST_UNREACHABLE,
  ICMPV4_ECHO,
  ICMPV4_ECHO_REPLY,
  ICMPV4_INFO_REPLY,
  ICMPV4_INFO_REQUEST,
  ICMPV4_MIN_ERROR_PAYLOAD_SIZE,
  ICMPV4_MIN_SIZE,
  ICMPV4_PARAM_PROBLEM,
  ICMPV4_PROTO_UNREACHABLE,
  ICMPV4_REASSEMBLY_TIMEOUT,
  ICMPV4_TIME_EXCEEDED,
  ICMPV4_TIMESTAMP,
  ICMPV4_TIMESTAMP_REPLY,
} from "../header/icmpv4.js";
import { IPV4_MIN_SIZE, IPv4Header } from "../header/ipv4.js";
import type { NIC } from "../nic.js";
import { type ProtocolStack, replyRouteOptions } from "../protocol.js";

/** Why the stack answers a received datagram with an ICMPv4 error (gVisor's icmpReason). */
export type ICMPv4ErrorReason =
  | { readonly kind: "parameterProblem"; readonly pointer: number }
  | { readonly kind: "protocolUnreachable" }
  /** RFC 792: Time Exceeded, code 1 — fragment reassembly time exceeded (gVisor's OnReassemblyTimeout). */
  | { readonly kind: "reassemblyTimeout" };

/** RFC 1812 §4.3.2.3: an ICMP error datagram stays within 576 bytes. */
const IPV4_MIN_PROCESSABLE_DATAGRAM = 576;

/** ICMPv4 types that are not errors: an error may answer only these (gVisor's choice). */
function isICMPv4Informational(type: number): boolean {
  return (
    type === ICMPV4_ECHO_REPLY ||
    type === ICMPV4_ECHO ||
    type === ICMPV4_TIMESTAMP ||
    type === ICMPV4_TIMESTAMP_REPLY ||
    type === ICMPV4_INFO_REQUEST ||
    type === ICMPV4_INFO_REPLY
  );
}

/**
 * Answers `datagram` (the received IPv4 datagram trimmed to its total length, its header as
 * gVisor leaves it: options processed and reassembly fixed up in place, checksum as received;
 * `broadcast` / `temporary`: how its destination matched) with an ICMP error, as gVisor's ipv4 returnError does (RFC 1812 §4.3.2.7, RFC 1122 §3.2.2):
 * never for a broadcast or multicast destination, an unspecified source, a non-first fragment,
 * any fragment of an ICMP datagram, or an ICMP message that is itself an error (or of an
 * unknown type); the route back is looked
 * up on the receiving NIC with the datagram's destination as source; then the rate limiter
 * (types 3 and 12 are in the default mask); the error carries as much of the datagram as fits
 * in 576 bytes. Counts `sent.paramProblem` / `sent.dstUnreachable`, or why nothing went out.
 */
export function returnICMPv4Error(
  stack: ProtocolStack,
  nic: NIC,
  datagram: Uint8Array,
  broadcast: boolean,
  temporary: boolean,
  reason: ICMPv4ErrorReason,
): void {
  const sent = stack.stats.icmp.v4.packetsSent;
  const h = new IPv4Header(datagram);
  const src = h.sourceAddress;
  const dst = h.destinationAddress;
  if (broadcast || isV4Multicast(dst) || isV4Unspecified(src) || h.fragmentOffset !== 0) {
    return;
  }
  const route = stack.findRoute(
    nic.id,
    dst,
    src,
    IPV4_PROTOCOL_NUMBER,
    replyRouteOptions(temporary),
  );
  if (isTcpipError(route)) {
    sent.noRoute++;
    return;
  }
  const ihl = h.ihl;
  if (h.protocol === ICMPV4_PROTOCOL_NUMBER) {
    // A fragment has no parsed transport header in gVisor (parse.IPv4 only parses an
    // unfragmented datagram's), so returnError's "fewer than 8 bytes of ICMP" refusal covers
    // every fragment of an ICMP datagram: no Time Exceeded on reassembly timeout, no Parameter
    // Problem for a bad option in fragment zero.
    if (h.moreFragments || h.fragmentOffset !== 0) return;
    if (datagram.length < ihl + ICMPV4_MIN_SIZE) return;
    if (!isICMPv4Informational(datagram[ihl])) return;
  }
  const type =
    reason.kind === "parameterProblem"
      ? ICMPV4_PARAM_PROBLEM
      : reason.kind === "reassemblyTimeout"
        ? ICMPV4_TIME_EXCEEDED
        : ICMPV4_DST_UNREACHABLE;
  if (!stack.allowICMPReply(IPV4_PROTOCOL_NUMBER, type)) {
    sent.rateLimited++;
    return;
  }
  const mtu = Math.min(route.mtu - IPV4_MIN_SIZE, IPV4_MIN_PROCESSABLE_DATAGRAM - IPV4_MIN_SIZE);
  const available = mtu - ICMPV4_MIN_SIZE;
  if (available < ihl + ICMPV4_MIN_ERROR_PAYLOAD_SIZE) return;
  const payloadLength = Math.min(datagram.length, available);
  const message = new Uint8Array(ICMPV4_MIN_SIZE + payloadLength);
  message[0] = type;
  if (reason.kind === "parameterProblem") {
    message[1] = 0;
    message[4] = reason.pointer;
  } else if (reason.kind === "reassemblyTimeout") {
    message[1] = ICMPV4_REASSEMBLY_TIMEOUT;
  } else {
    message[1] = ICMPV4_PROTO_UNREACHABLE;
  }
  message.set(datagram.subarray(0, payloadLength), ICMPV4_MIN_SIZE);
  if (route.writeICMP(message, 0) !== null) {
    sent.dropped++;
    return;
  }
  if (reason.kind === "parameterProblem") sent.paramProblem++;
  else if (reason.kind === "reassemblyTimeout") sent.timeExceeded++;
  else sent.dstUnreachable++;
}
