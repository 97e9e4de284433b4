/**
 * icmpfwd/netstack — the userspace stack and the seed's Forwarder API:
 *
 *   const stack = new Stack(); // IPv4 and IPv6 (StackOptions.networkProtocols to choose)
 *   const f = new Forwarder((req) => (req.packetInfo().localAddressTemporary ? req.reply() : false));
 *   stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
 *   stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
 *
 * Every export is named: what is not listed here (the ping registry, address keys, the
 * protocols' receive internals) is not part of the package's API.
 */
export {
  type Address,
  addressEquals,
  formatAddress,
  IPV4_ALL_SYSTEMS,
  IPV4_BROADCAST,
  IPV4_UNSPECIFIED,
  IPV6_ALL_NODES_MULTICAST,
  IPV6_ALL_ROUTERS_MULTICAST,
  IPV6_LOOPBACK,
  IPV6_UNSPECIFIED,
  isIPv4,
  isIPv6,
  isUnicastOutsideLoopback,
  isV4Broadcast,
  isV4Loopback,
  isV4Multicast,
  isV4Unspecified,
  isV6LinkLocalMulticast,
  isV6LinkLocalUnicast,
  isV6Loopback,
  isV6Multicast,
  isV6Unspecified,
  parseAddress,
  parseAddressWithPrefix,
  Subnet,
} from "./address.js";
export {
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  IPV4_PROTOCOL_NUMBER,
  IPV6_PROTOCOL_NUMBER,
  type NetworkPacketInfo,
  type NetworkProtocolNumber,
  PacketBuffer,
} from "./buffer.js";
export { type Clock, ManualClock, systemClock } from "./clock.js";
export { DEFAULT_NETWORK_PROTOCOLS } from "./default-protocols.js";
export { isTcpipError, type TcpipError, type TcpipErrorKind } from "./errors.js";
export {
  DEFAULT_IPV4_REASSEMBLY_TIMEOUT_MS,
  DEFAULT_IPV6_REASSEMBLY_TIMEOUT_MS,
  DEFAULT_REASSEMBLY_HIGH_THRESHOLD,
  DEFAULT_REASSEMBLY_LOW_THRESHOLD,
} from "./fragmentation/reassembler.js";
// The header views and the wire constants an embedder reads packets with (the complete header
// layer is header/index.ts).
export {
  checksum,
  checksumUpdate16,
  encodeICMPv4Echo,
  encodeICMPv6Echo,
  encodeIPv4,
  encodeIPv6,
  ICMPV4_DST_UNREACHABLE,
  ICMPV4_ECHO,
  ICMPV4_ECHO_REPLY,
  ICMPV4_MIN_SIZE,
  ICMPV4_PARAM_PROBLEM,
  ICMPV4_TIME_EXCEEDED,
  ICMPV6_DST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_MIN_SIZE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_PROBLEM,
  ICMPV6_TIME_EXCEEDED,
  type ICMPv4EchoFields,
  ICMPv4Header,
  type ICMPv6EchoFields,
  ICMPv6Header,
  IPV4_MAX_TOTAL_SIZE,
  IPV4_MIN_SIZE,
  IPV6_MAX_PAYLOAD_SIZE,
  IPV6_MIN_SIZE,
  type IPv4Fields,
  IPv4Header,
  type IPv6Fields,
  IPv6Header,
  parseICMPv4EchoFields,
  parseICMPv6EchoFields,
  parseIPv4Fields,
  parseIPv6Fields,
  pseudoHeaderChecksum,
} from "./header/index.js";
export {
  type AddHookOptions,
  HOOK_POINTS,
  type HookContext,
  type HookCounters,
  type HookHandle,
  type HookPoint,
  type HookVerdict,
  type PacketHook,
} from "./hooks.js";
export {
  copyEchoRequest,
  DEFAULT_MAX_HELD,
  type EchoReplyEvent,
  type EchoRequestCopy,
  Forwarder,
  type ForwarderHandler,
  type ForwarderOptions,
  ForwarderRequest,
  type ForwarderStats,
  type PingEndpoint,
  type PingEndpointOptions,
  RequestExpired,
  SYNTHETIC_ERROR_KINDS,
  type SyntheticErrorKind,
  type SyntheticErrorOptions,
  type SyntheticReplyOptions,
  sendSyntheticEchoReply,
  sendSyntheticError,
  syntheticErrorSourceProblem,
} from "./icmp/index.js";
export { type IPv4Protocol, newIPv4Protocol } from "./ipv4/protocol.js";
export { type IPv6Protocol, newIPv6Protocol } from "./ipv6/protocol.js";
export type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "./link-endpoint.js";
export type { AddressEntry, NIC } from "./nic.js";
export type {
  FindRouteOptions,
  FragmentationOptions,
  FragmentReassembly,
  NetworkProtocol,
  NetworkProtocolFactory,
  ProtocolStack,
} from "./protocol.js";
export type { NetworkHeaderParams, Route, RouteEntry } from "./route.js";
export { DEFAULT_TTL, type NICOptions, Stack, type StackOptions } from "./stack.js";
export { flattenStats, Stats } from "./stats.js";
export {
  Decision,
  type HandlerResult,
  type TransportEndpointID,
  type TransportProtocolHandler,
} from "./transport.js";
