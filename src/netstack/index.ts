/**
 * icmpfwd/netstack — the userspace stack and the seed's Forwarder API:
 *
 *   const f = new Forwarder((req) => (req.packetInfo().localAddressTemporary ? req.reply() : false));
 *   stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
 *   stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
 */
export * from "./address.js";
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
export * from "./icmp/index.js";
export { type IPv4Protocol, newIPv4Protocol } from "./ipv4/protocol.js";
export { type IPv6Protocol, newIPv6Protocol } from "./ipv6/protocol.js";
export type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "./link-endpoint.js";
export type { AddressEntry, NIC } from "./nic.js";
export type {
  FindRouteOptions,
  FragmentationOptions,
  NetworkProtocol,
  NetworkProtocolFactory,
  ProtocolStack,
} from "./protocol.js";
export type { NetworkHeaderParams, Route, RouteEntry } from "./route.js";
export {
  DEFAULT_TTL,
  type NICOptions,
  Stack,
  type StackOptions,
} from "./stack.js";
export { flattenStats, Stats } from "./stats.js";
export {
  Decision,
  type HandlerResult,
  type TransportEndpointID,
  type TransportProtocolHandler,
} from "./transport.js";
