/**
 * The contract between the stack and its network protocols (gVisor's stack.NetworkProtocol and
 * NetworkProtocolFactory). The protocols see the stack only through ProtocolStack, so ipv4/,
 * ipv6/, icmp/ and echo.ts never import stack.ts: the stack imports them, not the reverse.
 */
import type { Address } from "./address.js";
import type { NetworkProtocolNumber, PacketBuffer } from "./buffer.js";
import type { Clock } from "./clock.js";
import type { TcpipError } from "./errors.js";
import type { HookChains } from "./hooks.js";
import type { NIC } from "./nic.js";
import type { Route } from "./route.js";
import type { Stats } from "./stats.js";
import type { DeliveryResult, TransportEndpointID } from "./transport.js";

export interface FindRouteOptions {
  /**
   * Accept `localAddress` although the NIC does not own it: the reply path of a packet that
   * arrived for a temporary address (promiscuous NIC) answers from that address.
   */
  allowUnassignedLocal?: boolean;
}

const FROM_TEMPORARY: FindRouteOptions = Object.freeze({ allowUnassignedLocal: true });
const FROM_ASSIGNED: FindRouteOptions = Object.freeze({ allowUnassignedLocal: false });

/**
 * The route options of an answer to a received packet: from a temporary address it may leave
 * from that unassigned address. Shared constants, so the reply path allocates no options object.
 */
export function replyRouteOptions(temporary: boolean): FindRouteOptions {
  return temporary ? FROM_TEMPORARY : FROM_ASSIGNED;
}

/** The reassembly limits in force (StackOptions with the defaults filled in). */
export interface FragmentationOptions {
  readonly ipv4ReassemblyTimeoutMs: number;
  readonly ipv6ReassemblyTimeoutMs: number;
  readonly reassemblyHighThreshold: number;
  readonly reassemblyLowThreshold: number;
  readonly maxIPv4DatagramSize: number;
  readonly maxIPv6DatagramSize: number;
  readonly sweepIntervalMs: number;
}

/** What a network protocol (and the ICMP endpoints above it) uses of the stack. */
export interface ProtocolStack {
  readonly stats: Stats;
  readonly clock: Clock;
  /** The packet hook chains; the receive path runs prerouting and input. */
  readonly hooks: HookChains;
  readonly fragmentationOptions: FragmentationOptions;
  nic(id: number): NIC | undefined;
  /** Whether any NIC has `address` assigned (permanent addresses only). */
  ownsAddress(address: Address): boolean;
  /** Finds how to reach `remote` from `local` (null: the route selects a source address). */
  findRoute(
    nicId: number,
    local: Address | null,
    remote: Address,
    proto: NetworkProtocolNumber,
    options?: FindRouteOptions,
  ): Route | TcpipError;
  /** Whether an ICMP message of this type may be sent now (the stack-wide rate limiter). */
  allowICMPReply(proto: NetworkProtocolNumber, icmpType: number): boolean;
  /** Whether anything above the network layer (a default handler, a ping endpoint) takes packets. */
  hasTransportConsumers(protocol: number): boolean;
  deliverTransportPacket(pkt: PacketBuffer, id: TransportEndpointID): DeliveryResult;
  /** Called after a fragment was kept: the stack keeps its sweep timer running. */
  fragmentsPending(): void;
}

/** What the stack drives of a protocol's fragment reassembly (its sweep timer and close()). */
export interface FragmentReassembly {
  /** How many incomplete datagrams are held. */
  readonly pending: number;
  /** Releases the incomplete datagrams whose timeout has passed at `nowMs`; returns how many. */
  expire(nowMs: number): number;
  /** Drops everything held. */
  clear(): void;
}

/** One network protocol instance of a stack (gVisor's NetworkProtocol plus its endpoint). */
export interface NetworkProtocol {
  readonly number: NetworkProtocolNumber;
  readonly reassembler: FragmentReassembly;
  /** The receive path of one datagram from `nic` (gVisor's NetworkEndpoint.HandlePacket). */
  handlePacket(nic: NIC, packet: Uint8Array): void;
}

/** Builds a protocol for a stack (gVisor's stack.NetworkProtocolFactory). */
export type NetworkProtocolFactory = (stack: ProtocolStack) => NetworkProtocol;
