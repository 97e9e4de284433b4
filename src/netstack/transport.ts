import type { Address } from "./address.js";
import type { PacketBuffer } from "./buffer.js";

/**
 * A transport endpoint's identity (gVisor's stack.TransportEndpointID). For ICMP Echo:
 * localAddress = IP destination, localPort = ICMP ident, remoteAddress = IP source,
 * remotePort = 0.
 */
export interface TransportEndpointID {
  readonly localPort: number;
  readonly localAddress: Address;
  readonly remotePort: number;
  readonly remoteAddress: Address;
}

/**
 * A protocol's default handler (gVisor's SetTransportProtocolHandler): true = the handler
 * consumed the packet; false = the protocol's fallback continues. A promise holds the packet
 * until it settles (a TypeScript addition; a rejected promise counts as false).
 */
export type TransportProtocolHandler = (
  id: TransportEndpointID,
  pkt: PacketBuffer,
) => boolean | Promise<boolean>;

/** The outcome of delivering a packet to the transport layer. */
export type DeliveryResult = boolean | Promise<boolean>;
