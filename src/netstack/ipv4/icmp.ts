import { addressEquals, isV4Multicast } from "../address.js";
import { allocateBytes, IPV4_PROTOCOL_NUMBER, type PacketBuffer } from "../buffer.js";
import { BuiltInEchoReply, deliverEchoRequest } from "../echo.js";
import { isTcpipError } from "../errors.js";
import { checksum } from "../header/checksum.js";
import { icmpIdent } from "../header/icmp-message.js";
import {
  ICMPV4_DST_UNREACHABLE,
  ICMPV4_ECHO,
  ICMPV4_ECHO_REPLY,
  ICMPV4_INFO_REPLY,
  ICMPV4_INFO_REQUEST,
  ICMPV4_MIN_SIZE,
  ICMPV4_PARAM_PROBLEM,
  ICMPV4_REDIRECT,
  ICMPV4_SRC_QUENCH,
  ICMPV4_TIME_EXCEEDED,
  ICMPV4_TIMESTAMP,
  ICMPV4_TIMESTAMP_REPLY,
  ICMPv4Header,
} from "../header/icmpv4.js";
import { IPV4_MIN_SIZE, IPv4Header } from "../header/ipv4.js";
import type { NIC } from "../nic.js";
import { type ProtocolStack, replyRouteOptions } from "../protocol.js";
import type { ICMPv4ReceivedStats } from "../stats.js";
import type { TransportEndpointID } from "../transport.js";

/**
 * ICMPv4 receive (gVisor's ipv4 handleICMP): validate, count by type, run the Echo path. The
 * network layer has processed the options already; an Echo Reply takes the first
 * `replyHeaderLength` bytes of the request's header (20, plus the processed options).
 */
export function handleICMPv4(
  stack: ProtocolStack,
  nic: NIC,
  pkt: PacketBuffer,
  replyHeaderLength = IPV4_MIN_SIZE,
): void {
  const received = stack.stats.icmp.v4.packetsReceived;
  const msg = pkt.transportMessage();
  if (msg.length < ICMPV4_MIN_SIZE) {
    received.invalid++;
    return;
  }
  // Deviation from gVisor, on purpose: an Echo Request with a bad checksum is dropped here too
  // (gVisor still hands it to raw sockets, which this stack does not have).
  if (checksum(msg) !== 0xffff) {
    received.invalid++;
    return;
  }
  if (msg[0] === ICMPV4_ECHO) {
    received.echoRequest++;
    handleEchoRequest(stack, nic, pkt, msg, replyHeaderLength);
    return;
  }
  const counter = RECEIVED_COUNTER[msg[0]];
  if (counter === undefined) {
    received.invalid++;
    return;
  }
  received[counter]++;
  // Every other valid message goes up too: a ping endpoint takes its Echo Replies, the default
  // handler (a Forwarder) sees the rest, and reply() is false for them.
  void stack.deliverTransportPacket(pkt, echoId(pkt, msg));
}

/** The receive counter of each ICMPv4 type this stack knows, besides Echo Request. */
const RECEIVED_COUNTER: Partial<
  Record<number, Exclude<keyof ICMPv4ReceivedStats, "invalid" | "echoRequest">>
> = {
  [ICMPV4_ECHO_REPLY]: "echoReply",
  [ICMPV4_DST_UNREACHABLE]: "dstUnreachable",
  [ICMPV4_SRC_QUENCH]: "srcQuench",
  [ICMPV4_REDIRECT]: "redirect",
  [ICMPV4_TIME_EXCEEDED]: "timeExceeded",
  [ICMPV4_PARAM_PROBLEM]: "paramProblem",
  [ICMPV4_TIMESTAMP]: "timestamp",
  [ICMPV4_TIMESTAMP_REPLY]: "timestampReply",
  [ICMPV4_INFO_REQUEST]: "infoRequest",
  [ICMPV4_INFO_REPLY]: "infoReply",
};

/** The transport id of an ICMP message; its addresses are copies (the handler's to keep). */
function echoId(pkt: PacketBuffer, msg: Uint8Array): TransportEndpointID {
  const h = new IPv4Header(pkt.data);
  return {
    localAddress: h.copyDestinationAddress(),
    localPort: icmpIdent(msg),
    remoteAddress: h.copySourceAddress(),
    remotePort: 0,
  };
}

function handleEchoRequest(
  stack: ProtocolStack,
  nic: NIC,
  pkt: PacketBuffer,
  msg: Uint8Array,
  replyHeaderLength: number,
): void {
  const broadcast = pkt.packetInfo.localAddressBroadcast;
  const temporary = pkt.packetInfo.localAddressTemporary;
  if (!stack.hasTransportConsumers(pkt.transportProtocol)) {
    // Nobody above the network layer can see this request (no handler, no ping endpoint): the
    // decision table reduces to "sent unless IPv4 temporary", and the reply is built in place.
    if (temporary) return;
    const reply = withReplyHeader(pkt.data, pkt.networkHeaderLength, replyHeaderLength);
    sendEchoReply(stack, nic, reply, replyHeaderLength, broadcast, temporary);
    return;
  }
  // The reply is built from a copy taken now: the handler may keep or change the request.
  // It takes the request's IP header (TOS, ID, flags) with the processed options, then the
  // ICMP message.
  const reply = allocateBytes(replyHeaderLength + msg.length);
  reply.set(pkt.data.subarray(0, replyHeaderLength), 0);
  reply.set(msg, replyHeaderLength);
  const hook = new BuiltInEchoReply(() =>
    sendEchoReply(stack, nic, reply, replyHeaderLength, broadcast, temporary),
  );
  // IPv4 temporary addresses get no automatic reply (gVisor #11609): only an explicit reply().
  deliverEchoRequest(stack, pkt, echoId(pkt, msg), hook, temporary);
}

/**
 * The datagram with its header cut to `replyHeaderLength` (the processed options, which the
 * network layer wrote at the front of the option area): in place, a view over the same bytes.
 */
function withReplyHeader(
  data: Uint8Array,
  headerLength: number,
  replyHeaderLength: number,
): Uint8Array {
  if (headerLength === replyHeaderLength) return data;
  data.copyWithin(replyHeaderLength, headerLength);
  return data.subarray(0, data.length - (headerLength - replyHeaderLength));
}

/** The ICMP view of the reply being written, re-pointed per reply (nothing is allocated). */
const replyView = new ICMPv4Header(new Uint8Array(0));

/**
 * gVisor's Echo Reply: route, rate limit, then the request's header with fields replaced.
 * `reply` holds the request (an IP header of `headerLength` bytes — 20 plus the processed
 * options — then the ICMP message) and becomes the reply.
 */
function sendEchoReply(
  stack: ProtocolStack,
  nic: NIC,
  reply: Uint8Array,
  headerLength: number,
  broadcast: boolean,
  temporary: boolean,
): void {
  const sent = stack.stats.icmp.v4.packetsSent;
  const ip = new IPv4Header(reply);
  // Swap source and destination first, so the route lookup can use views into the reply itself.
  ip.swapAddresses();
  const requestDst = ip.sourceAddress;
  const requestSrc = ip.destinationAddress;
  // RFC 1122 3.2.1.3: never answer from a broadcast or multicast address.
  const local = broadcast || isV4Multicast(requestDst) ? null : requestDst;
  const route = stack.findRoute(
    nic.id,
    local,
    requestSrc,
    IPV4_PROTOCOL_NUMBER,
    replyRouteOptions(temporary),
  );
  if (isTcpipError(route)) {
    // No packet goes out, as in gVisor; the counter is ours.
    sent.noRoute++;
    return;
  }
  if (!stack.allowICMPReply(IPV4_PROTOCOL_NUMBER, ICMPV4_ECHO_REPLY)) {
    sent.rateLimited++;
    return;
  }
  ip.ihl = headerLength;
  // By value: the route may have selected another source (a broadcast or multicast request).
  if (!addressEquals(route.localAddress, requestDst)) ip.setSourceAddress(route.localAddress);
  ip.ttl = route.defaultTTL;
  // gVisor's sendICMPEchoReply sets total length and checksum itself and writes with
  // writePacket: the request's ID is kept even when it is 0 on a non-atomic reply.
  ip.totalLength = reply.length;
  ip.checksum = 0;
  ip.checksum = ip.calculateChecksum();
  // Summed afresh over the whole message (not updated incrementally): the bytes stay as before.
  const icmp = replyView.reset(reply, headerLength);
  icmp.type = ICMPV4_ECHO_REPLY;
  icmp.checksum = icmp.calculateChecksum();
  icmp.release();
  if (route.writeBuiltPacket(reply) !== null) {
    sent.dropped++;
    return;
  }
  sent.echoReply++;
}
