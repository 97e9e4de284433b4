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
export { isTcpipError, type TcpipError, type TcpipErrorKind } from "./errors.js";
export * from "./icmp/index.js";
export type { LinkEndpoint, LinkWriteError, NetworkDispatcher } from "./link-endpoint.js";
export type { AddressEntry, NIC } from "./nic.js";
export type { NetworkHeaderParams, Route, RouteEntry } from "./route.js";
export {
  DEFAULT_TTL,
  type FindRouteOptions,
  type NICOptions,
  Stack,
  type StackOptions,
} from "./stack.js";
export { flattenStats, Stats } from "./stats.js";
export type { TransportEndpointID, TransportProtocolHandler } from "./transport.js";
