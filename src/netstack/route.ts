import { type Address, formatAddress, isIPv4, type Subnet } from "./address.js";
import {
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  IPV4_PROTOCOL_NUMBER,
  type NetworkProtocolNumber,
} from "./buffer.js";
import { type TcpipError, tcpipError } from "./errors.js";
import { ICMPv4Header } from "./header/icmpv4.js";
import { ICMPv6Header } from "./header/icmpv6.js";
import { encodeIPv4, IPV4_FLAG_DF, IPV4_FLAG_MF, IPv4Header } from "./header/ipv4.js";
import { encodeIPv6, IPV6_MIN_SIZE } from "./header/ipv6.js";
import {
  IPV6_EXT_HDR_FRAGMENT,
  IPV6_FRAGMENT_EXT_HDR_LENGTH,
} from "./header/ipv6-extension-headers.js";
import type { HookChains } from "./hooks.js";
import type { NIC } from "./nic.js";
import type { IPStats } from "./stats.js";

const icmpv4View = new ICMPv4Header(new Uint8Array(0));
const icmpv6View = new ICMPv6Header(new Uint8Array(0));

/** The Next Header field of the IPv6 fixed header. */
const IPV6_NEXT_HEADER_FIELD = 6;

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
  /** The next Identification for an IPv6 Fragment header (RFC 8200 §4.5, RFC 7739). */
  nextIPv6FragmentId(): number;
  /** The output and postrouting chains every sent packet passes. */
  readonly hooks: HookChains;
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

  /**
   * Writes a datagram whose IP header the caller built completely, total length and checksum
   * included (gVisor's ipv4 endpoint.writePacket, which sendICMPEchoReply uses since Dec 2021):
   * no field is touched, so an IP ID of 0 stays 0 (the RFC 6864 fix-up is
   * WriteHeaderIncludedPacket's only).
   */
  writeBuiltPacket(packet: Uint8Array): TcpipError | null {
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
    // Views re-pointed per message: an ICMP write allocates no header object.
    if (v4) {
      const h = icmpv4View.reset(message);
      h.checksum = h.calculateChecksum();
      h.release();
    } else {
      const h = icmpv6View.reset(message);
      h.checksum = h.calculateChecksum(this.localAddress, this.remoteAddress);
      h.release();
    }
    return this.writePacket({ protocol, ttl: this.defaultTTL, tos }, message);
  }

  /**
   * The last stage of every write (gVisor's writePacket + writePacketPostRouting): the output
   * and postrouting hooks, then the link — in fragments when the datagram exceeds the MTU.
   * A hook's drop is not an error for the writer (as gVisor's IPTables*Dropped).
   */
  private emit(original: Uint8Array): TcpipError | null {
    const stats = this.ctx.ipStats(this.netProto);
    let packet = original;
    const hooks = this.ctx.hooks;
    if (hooks.output.length !== 0) {
      const out = hooks.run("output", packet, this.netProto, this.nic.id);
      if (out === null) {
        stats.outputDropped++;
        return null;
      }
      packet = out;
    }
    if (hooks.postrouting.length !== 0) {
      const out = hooks.run("postrouting", packet, this.netProto, this.nic.id);
      if (out === null) {
        stats.postroutingDropped++;
        return null;
      }
      packet = out;
    }
    if (packet.length > this.nic.mtu) return this.writeFragments(packet, stats);
    const err = this.nic.writePacket(packet);
    if (err !== null) {
      stats.outgoingPacketErrors++;
      return err;
    }
    stats.packetsSent++;
    return null;
  }

  /**
   * Fragmentation on output (gVisor's handleFragments / buildNextFragment): every fragment
   * carries a copy of the header (IPv4: the whole header, options included, as gVisor copies
   * it; IPv6: the fixed header and a Fragment header), data in multiples of 8 octets. An IPv4
   * datagram with DF set is not fragmented: it is not sent, counted `outgoingPacketTooBig` and
   * `outgoingPacketErrors`, and the writer gets messageTooLong. Each fragment written counts in
   * `packetsSent`; a link error stops the rest, which count in `outgoingPacketErrors`.
   */
  private writeFragments(packet: Uint8Array, stats: IPStats): TcpipError | null {
    const mtu = this.nic.mtu;
    const v4 = this.netProto === IPV4_PROTOCOL_NUMBER;
    let headerLength: number;
    let fragmentHeaderLength: number;
    if (v4) {
      const h = new IPv4Header(packet);
      if ((h.flags & IPV4_FLAG_DF) !== 0) {
        stats.outgoingPacketTooBig++;
        stats.outgoingPacketErrors++;
        return tcpipError(
          "messageTooLong",
          `${packet.length} bytes exceed the MTU ${mtu} and DF is set`,
        );
      }
      headerLength = h.ihl;
      fragmentHeaderLength = 0;
    } else {
      headerLength = IPV6_MIN_SIZE;
      fragmentHeaderLength = IPV6_FRAGMENT_EXT_HDR_LENGTH;
    }
    const perFragment = (mtu - headerLength - fragmentHeaderLength) & ~7;
    if (perFragment <= 0 || packet.length <= headerLength) {
      stats.outgoingPacketErrors++;
      return tcpipError("messageTooLong", `the MTU ${mtu} leaves no room for a fragment`);
    }
    const payload = packet.subarray(headerLength);
    const count = Math.ceil(payload.length / perFragment);
    const header = packet.subarray(0, headerLength);
    let baseOffset = 0;
    let baseMore = false;
    let flags = 0;
    const id = v4 ? 0 : this.ctx.nextIPv6FragmentId();
    if (v4) {
      const h = new IPv4Header(packet);
      // A datagram that is itself a fragment keeps its place and its MF on the last piece.
      baseOffset = h.fragmentOffset;
      baseMore = h.moreFragments;
      flags = h.flags & ~IPV4_FLAG_MF;
    }
    stats.packetsFragmented++;
    for (let i = 0; i < count; i++) {
      const start = i * perFragment;
      const chunk = payload.subarray(start, Math.min(payload.length, start + perFragment));
      const more = i < count - 1 || baseMore;
      const frag = new Uint8Array(headerLength + fragmentHeaderLength + chunk.length);
      frag.set(header, 0);
      frag.set(chunk, headerLength + fragmentHeaderLength);
      if (v4) {
        const h = new IPv4Header(frag);
        h.setFlagsFragmentOffset(more ? flags | IPV4_FLAG_MF : flags, baseOffset + start);
        h.totalLength = frag.length;
        h.checksum = 0;
        h.checksum = h.calculateChecksum();
      } else {
        const f = headerLength;
        frag[f] = packet[IPV6_NEXT_HEADER_FIELD];
        frag[f + 1] = 0;
        const offsetField = (start & ~7) | (more ? 1 : 0);
        frag[f + 2] = offsetField >>> 8;
        frag[f + 3] = offsetField & 0xff;
        frag[f + 4] = id >>> 24;
        frag[f + 5] = id >>> 16;
        frag[f + 6] = id >>> 8;
        frag[f + 7] = id;
        frag[IPV6_NEXT_HEADER_FIELD] = IPV6_EXT_HDR_FRAGMENT;
        const payloadLength = frag.length - IPV6_MIN_SIZE;
        frag[4] = payloadLength >>> 8;
        frag[5] = payloadLength & 0xff;
      }
      const err = this.nic.writePacket(frag);
      if (err !== null) {
        stats.outgoingPacketErrors += count - i;
        return err;
      }
      stats.packetsSent++;
      stats.fragmentsSent++;
    }
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
