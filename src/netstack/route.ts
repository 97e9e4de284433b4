import { type Address, formatAddress, isIPv4, type Subnet } from "./address.js";
import {
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  IPV4_PROTOCOL_NUMBER,
  type NetworkProtocolNumber,
} from "./buffer.js";
import { type TcpipError, tcpipError } from "./errors.js";
import { checksum, pseudoHeaderChecksum } from "./header/checksum.js";
import { encodeIPv4, IPV4_FLAG_DF, IPV4_FLAG_MF, IPv4Header } from "./header/ipv4.js";
import { encodeIPv6, IPV6_MIN_SIZE } from "./header/ipv6.js";
import type { NIC } from "./nic.js";
import type { IPStats } from "./stats.js";

/** One row of the route table: packets to `destination` leave through `nic`. */
export interface RouteEntry {
  readonly destination: Subnet;
  /** Next hop; null for on-link destinations. */
  readonly gateway: Address | null;
  readonly nic: number;
}

/** The parts of the stack a route writes through. */
export interface RouteContext {
  readonly defaultTTL: number;
  ipStats(proto: NetworkProtocolNumber): IPStats;
  /** The next IPv4 identification for a non-atomic datagram (RFC 6864). */
  nextIPv4Id(): number;
}

/** Header fields for a packet whose IP header the route builds (gVisor's NetworkHeaderParams). */
export interface NetworkHeaderParams {
  protocol: number;
  ttl: number;
  /** IPv4 TOS or IPv6 traffic class. */
  tos: number;
}

/**
 * A resolved path for sending: the NIC, the local (source) and remote addresses, the next hop.
 * Writing through a route adds or fixes the IP header and counts the packet.
 */
export class Route {
  constructor(
    readonly nic: NIC,
    readonly netProto: NetworkProtocolNumber,
    readonly localAddress: Address,
    readonly remoteAddress: Address,
    readonly nextHop: Address | null,
    private readonly ctx: RouteContext,
  ) {}

  get mtu(): number {
    return this.nic.mtu;
  }

  get defaultTTL(): number {
    return this.ctx.defaultTTL;
  }

  /**
   * Writes a datagram whose IP header the caller built (gVisor's WriteHeaderIncludedPacket).
   * IPv4: sets total length, assigns an ID to a non-atomic datagram whose ID is 0, recomputes
   * the header checksum. IPv6: sets the payload length.
   */
  writeHeaderIncludedPacket(packet: Uint8Array): TcpipError | null {
    if (this.netProto === IPV4_PROTOCOL_NUMBER) {
      const h = new IPv4Header(packet);
      h.totalLength = packet.length;
      const atomic =
        (h.flags & IPV4_FLAG_DF) !== 0 && (h.flags & IPV4_FLAG_MF) === 0 && h.fragmentOffset === 0;
      if (h.id === 0 && !atomic) h.id = this.ctx.nextIPv4Id();
      h.checksum = 0;
      h.checksum = h.calculateChecksum();
    } else {
      packet[4] = ((packet.length - IPV6_MIN_SIZE) >> 8) & 0xff;
      packet[5] = (packet.length - IPV6_MIN_SIZE) & 0xff;
    }
    return this.emit(packet);
  }

  /** Prepends an IP header to a transport message and writes it. */
  writePacket(params: NetworkHeaderParams, transport: Uint8Array): TcpipError | null {
    if (this.netProto === IPV4_PROTOCOL_NUMBER) {
      const packet = new Uint8Array(20 + transport.length);
      encodeIPv4(packet, 0, {
        tos: params.tos,
        totalLength: packet.length,
        id: this.ctx.nextIPv4Id(),
        flags: 0,
        fragmentOffset: 0,
        ttl: params.ttl,
        protocol: params.protocol,
        srcAddr: this.localAddress,
        dstAddr: this.remoteAddress,
      });
      packet.set(transport, 20);
      return this.emit(packet);
    }
    const packet = new Uint8Array(IPV6_MIN_SIZE + transport.length);
    encodeIPv6(packet, 0, {
      trafficClass: params.tos,
      flowLabel: 0,
      payloadLength: transport.length,
      nextHeader: params.protocol,
      hopLimit: params.ttl,
      srcAddr: this.localAddress,
      dstAddr: this.remoteAddress,
    });
    packet.set(transport, IPV6_MIN_SIZE);
    return this.emit(packet);
  }

  /**
   * Writes an ICMP message for this route's family: fills in its checksum (ICMPv6 with the
   * pseudo-header of this route's addresses), then the IP header with the default TTL and `tos`.
   */
  writeICMP(message: Uint8Array, tos: number): TcpipError | null {
    const v4 = this.netProto === IPV4_PROTOCOL_NUMBER;
    const protocol = v4 ? ICMPV4_PROTOCOL_NUMBER : ICMPV6_PROTOCOL_NUMBER;
    message[2] = 0;
    message[3] = 0;
    const initial = v4
      ? 0
      : pseudoHeaderChecksum(protocol, this.localAddress, this.remoteAddress, message.length);
    const c = ~checksum(message, initial) & 0xffff;
    message[2] = c >> 8;
    message[3] = c & 0xff;
    return this.writePacket({ protocol, ttl: this.defaultTTL, tos }, message);
  }

  private emit(packet: Uint8Array): TcpipError | null {
    const stats = this.ctx.ipStats(this.netProto);
    if (packet.length > this.nic.mtu) {
      // Fragmentation on output arrives with IP fidelity 2/2; until then the packet is refused.
      stats.outgoingPacketErrors++;
      return tcpipError("messageTooLong", `${packet.length} bytes exceed the MTU ${this.nic.mtu}`);
    }
    const err = this.nic.writePacket(packet);
    if (err !== null) {
      stats.outgoingPacketErrors++;
      return err;
    }
    stats.packetsSent++;
    return null;
  }

  toString(): string {
    return `${formatAddress(this.localAddress)} -> ${formatAddress(this.remoteAddress)} via NIC ${this.nic.id}`;
  }
}

/** Inserts keeping the table ordered by prefix length, longest first (first match wins). */
export function insertRoute(table: RouteEntry[], entry: RouteEntry): void {
  const i = table.findIndex((r) => r.destination.prefixLength < entry.destination.prefixLength);
  if (i < 0) table.push(entry);
  else table.splice(i, 0, entry);
}

export function routeFamilyMatches(entry: RouteEntry, remote: Address): boolean {
  return isIPv4(entry.destination.address) === isIPv4(remote);
}
