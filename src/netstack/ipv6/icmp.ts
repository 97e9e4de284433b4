import { isV6Multicast } from "../address.js";
import {
  allocateBytes,
  ICMPV6_PROTOCOL_NUMBER,
  IPV6_PROTOCOL_NUMBER,
  type PacketBuffer,
} from "../buffer.js";
import { BuiltInEchoReply, deliverEchoRequest } from "../echo.js";
import { isTcpipError } from "../errors.js";
import { checksum, pseudoHeaderChecksum } from "../header/checksum.js";
import { icmpIdent } from "../header/icmp-message.js";
import {
  ICMPV6_DST_UNREACHABLE,
  ICMPV6_ECHO_MIN_SIZE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_HEADER_SIZE,
  ICMPV6_MLD_DONE,
  ICMPV6_MLD_QUERY,
  ICMPV6_MLD_REPORT,
  ICMPV6_MLDV2_REPORT,
  ICMPV6_NEIGHBOR_ADVERT,
  ICMPV6_NEIGHBOR_SOLICIT,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_PROBLEM,
  ICMPV6_REDIRECT,
  ICMPV6_ROUTER_ADVERT,
  ICMPV6_ROUTER_SOLICIT,
  ICMPV6_TIME_EXCEEDED,
  ICMPv6Header,
} from "../header/icmpv6.js";
import { IPv6Header } from "../header/ipv6.js";
import type { NIC } from "../nic.js";
import { type ProtocolStack, replyRouteOptions } from "../protocol.js";
import type { ICMPv6ReceivedStats } from "../stats.js";
import type { TransportEndpointID } from "../transport.js";

/** ICMPv6 receive (gVisor's ipv6 handleICMP): validate with the pseudo-header, count, echo. */
export function handleICMPv6(stack: ProtocolStack, nic: NIC, pkt: PacketBuffer): void {
  const received = stack.stats.icmp.v6.packetsReceived;
  const msg = pkt.transportMessage();
  const ip = new IPv6Header(pkt.data);
  if (msg.length < ICMPV6_HEADER_SIZE) {
    received.invalid++;
    return;
  }
  const pseudo = pseudoHeaderChecksum(
    ICMPV6_PROTOCOL_NUMBER,
    ip.sourceAddress,
    ip.destinationAddress,
    msg.length,
  );
  if (checksum(msg, pseudo) !== 0xffff) {
    received.invalid++;
    return;
  }
  const type = msg[0];
  if (
    (type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY) &&
    msg.length < ICMPV6_ECHO_MIN_SIZE
  ) {
    received.invalid++;
    return;
  }
  if (type === ICMPV6_ECHO_REQUEST) {
    received.echoRequest++;
    handleEchoRequest(stack, nic, pkt, ip, msg);
    return;
  }
  const counter = RECEIVED_COUNTER[type];
  if (counter === undefined) {
    received.unrecognized++;
    return;
  }
  received[counter]++;
  // Every other known message goes up too: a ping endpoint takes its Echo Replies, the default
  // handler (a Forwarder) sees the rest, and reply() is false for them.
  void stack.deliverTransportPacket(pkt, echoId(ip, msg));
}

/** The receive counter of each ICMPv6 type this stack knows, besides Echo Request. */
const RECEIVED_COUNTER: Partial<
  Record<number, Exclude<keyof ICMPv6ReceivedStats, "invalid" | "unrecognized" | "echoRequest">>
> = {
  [ICMPV6_ECHO_REPLY]: "echoReply",
  [ICMPV6_DST_UNREACHABLE]: "dstUnreachable",
  [ICMPV6_PACKET_TOO_BIG]: "packetTooBig",
  [ICMPV6_TIME_EXCEEDED]: "timeExceeded",
  [ICMPV6_PARAM_PROBLEM]: "paramProblem",
  [ICMPV6_ROUTER_SOLICIT]: "routerSolicit",
  [ICMPV6_ROUTER_ADVERT]: "routerAdvert",
  [ICMPV6_NEIGHBOR_SOLICIT]: "neighborSolicit",
  [ICMPV6_NEIGHBOR_ADVERT]: "neighborAdvert",
  [ICMPV6_REDIRECT]: "redirectMsg",
  [ICMPV6_MLD_QUERY]: "multicastListenerQuery",
  [ICMPV6_MLD_REPORT]: "multicastListenerReport",
  [ICMPV6_MLDV2_REPORT]: "multicastListenerReportV2",
  [ICMPV6_MLD_DONE]: "multicastListenerDone",
};

/** The transport id of an ICMPv6 message; its addresses are copies (the handler's to keep). */
function echoId(ip: IPv6Header, msg: Uint8Array): TransportEndpointID {
  return {
    localAddress: ip.copyDestinationAddress(),
    localPort: icmpIdent(msg),
    remoteAddress: ip.copySourceAddress(),
    remotePort: 0,
  };
}

function handleEchoRequest(
  stack: ProtocolStack,
  nic: NIC,
  pkt: PacketBuffer,
  ip: IPv6Header,
  msg: Uint8Array,
): void {
  // Copies taken now: the handler may keep or change the request.
  const icmp = allocateBytes(msg.length);
  icmp.set(msg);
  const src = ip.sourceAddress.slice();
  const dst = ip.destinationAddress.slice();
  const trafficClass = ip.trafficClass;
  const temporary = pkt.packetInfo.localAddressTemporary;
  const hook = new BuiltInEchoReply(() =>
    sendEchoReply(stack, nic, icmp, src, dst, trafficClass, temporary),
  );
  // IPv6 has no temporary-address suppression rule: promiscuous IPv6 is answered by default.
  deliverEchoRequest(stack, pkt, echoId(ip, msg), hook, false);
}

/** The view of the reply being written, re-pointed per reply (nothing is allocated). */
const replyView = new ICMPv6Header(new Uint8Array(0));

/**
 * gVisor's ICMPv6 Echo Reply: route (a multicast destination gets a selected source), then the
 * rate limiter, then the ICMP message with type 129; hop limit = the stack default, traffic
 * class copied, flow label 0, no extension headers.
 */
function sendEchoReply(
  stack: ProtocolStack,
  nic: NIC,
  icmp: Uint8Array,
  requestSrc: Uint8Array,
  requestDst: Uint8Array,
  trafficClass: number,
  temporary: boolean,
): void {
  const sent = stack.stats.icmp.v6.packetsSent;
  const local = isV6Multicast(requestDst) ? null : requestDst;
  const route = stack.findRoute(
    nic.id,
    local,
    requestSrc,
    IPV6_PROTOCOL_NUMBER,
    replyRouteOptions(temporary),
  );
  if (isTcpipError(route)) {
    // No packet goes out, as in gVisor; the counter is ours.
    sent.noRoute++;
    return;
  }
  if (!stack.allowICMPReply(IPV6_PROTOCOL_NUMBER, ICMPV6_ECHO_REPLY)) {
    sent.rateLimited++;
    return;
  }
  replyView.reset(icmp).type = ICMPV6_ECHO_REPLY;
  replyView.release();
  const err = route.writeICMP(icmp, trafficClass);
  if (err !== null) {
    sent.dropped++;
    return;
  }
  sent.echoReply++;
}
