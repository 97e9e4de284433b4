import { type Address, isV6Loopback, isV6Multicast } from "../address.js";
import { ICMPV6_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER, PacketBuffer } from "../buffer.js";
import {
  IPV6_MIN_SIZE,
  IPV6_NEXT_HEADER_DESTINATION_OPTIONS,
  IPV6_NEXT_HEADER_FRAGMENT,
  IPV6_NEXT_HEADER_HOP_BY_HOP,
  IPV6_NEXT_HEADER_NO_NEXT_HEADER,
  IPV6_NEXT_HEADER_ROUTING,
  IPv6Header,
} from "../header/ipv6.js";
import type { NIC } from "../nic.js";
import type { Stack } from "../stack.js";
import { handleICMPv6 } from "./icmp.js";

/**
 * The IPv6 receive path (gVisor's ipv6.endpoint.HandlePacket): validate the fixed header, apply
 * the source and destination rules, deliver ICMPv6. The kernel's own chatter on a TUN (router
 * solicitations to ff02::2, MLD reports to ff02::16) is for groups this host has not joined and
 * ends, counted, as an invalid destination.
 */
export class IPv6Protocol {
  constructor(private readonly stack: Stack) {}

  handlePacket(nic: NIC, packet: Uint8Array): void {
    const stats = this.stack.stats.ipv6;
    stats.packetsReceived++;
    if (packet.length < IPV6_MIN_SIZE) {
      stats.malformedPacketsReceived++;
      return;
    }
    const h = new IPv6Header(packet);
    if (!h.isValid(packet.length)) {
      stats.malformedPacketsReceived++;
      return;
    }
    const src: Address = h.sourceAddress;
    const dst: Address = h.destinationAddress;
    // RFC 4291 2.7: a multicast address is never a source; ::1 never arrives from a link.
    if (isV6Multicast(src) || isV6Loopback(src)) {
      stats.invalidSourceAddressesReceived++;
      return;
    }
    if (isV6Loopback(dst)) {
      stats.invalidDestinationAddressesReceived++;
      return;
    }
    const match = nic.matchIPv6Destination(dst);
    if (match.kind === "none") {
      stats.invalidDestinationAddressesReceived++;
      return;
    }
    const next = h.nextHeader;
    if (next !== ICMPV6_PROTOCOL_NUMBER) {
      if (next === IPV6_NEXT_HEADER_FRAGMENT) stats.fragmentsReceivedUnsupported++;
      else if (
        next === IPV6_NEXT_HEADER_HOP_BY_HOP ||
        next === IPV6_NEXT_HEADER_ROUTING ||
        next === IPV6_NEXT_HEADER_DESTINATION_OPTIONS
      ) {
        // Extension headers arrive with IP fidelity 1/2.
        stats.unsupportedHeadersReceived++;
      } else if (next !== IPV6_NEXT_HEADER_NO_NEXT_HEADER) stats.unknownProtocolRcvdPackets++;
      return;
    }
    const end = IPV6_MIN_SIZE + h.payloadLength;
    const pkt = new PacketBuffer(end < packet.length ? packet.subarray(0, end) : packet);
    pkt.nicId = nic.id;
    pkt.networkProtocol = IPV6_PROTOCOL_NUMBER;
    pkt.networkHeaderLength = IPV6_MIN_SIZE;
    pkt.transportOffset = IPV6_MIN_SIZE;
    pkt.transportProtocol = ICMPV6_PROTOCOL_NUMBER;
    pkt.receivedAtMs = this.stack.clock.nowMs();
    pkt.packetInfo.localAddressTemporary = match.kind === "temporary";
    stats.packetsDelivered++;
    handleICMPv6(this.stack, nic, pkt);
  }
}
