import { type Address, isV4Broadcast, isV4Loopback, isV4Multicast } from "../address.js";
import { ICMPV4_PROTOCOL_NUMBER, IPV4_PROTOCOL_NUMBER, PacketBuffer } from "../buffer.js";
import { IPV4_MIN_SIZE, IPv4Header } from "../header/ipv4.js";
import type { NIC } from "../nic.js";
import type { Stack } from "../stack.js";
import { handleICMPv4 } from "./icmp.js";

/**
 * The IPv4 receive path (gVisor's ipv4.endpoint.HandlePacket + handleValidatedPacket): validate
 * the header, apply the source and destination rules, and deliver to ICMP.
 */
export class IPv4Protocol {
  constructor(private readonly stack: Stack) {}

  handlePacket(nic: NIC, packet: Uint8Array): void {
    const stats = this.stack.stats.ipv4;
    stats.packetsReceived++;
    if (packet.length < IPV4_MIN_SIZE) {
      stats.malformedPacketsReceived++;
      return;
    }
    const h = new IPv4Header(packet);
    if (!h.isValid(packet.length) || !h.isChecksumValid()) {
      stats.malformedPacketsReceived++;
      return;
    }
    const src: Address = h.sourceAddress;
    const dst: Address = h.destinationAddress;
    // Loopback addresses never arrive from a real link (RFC 1122 3.2.1.3).
    if (isV4Loopback(src)) {
      stats.invalidSourceAddressesReceived++;
      return;
    }
    if (isV4Loopback(dst)) {
      stats.invalidDestinationAddressesReceived++;
      return;
    }
    // A broadcast or multicast source is never legitimate (RFC 1122 3.2.1.3).
    if (isV4Multicast(src) || isV4Broadcast(src) || nic.isIPv4SubnetBroadcast(src)) {
      stats.invalidSourceAddressesReceived++;
      return;
    }
    const match = nic.matchIPv4Destination(dst);
    if (match.kind === "none") {
      stats.invalidDestinationAddressesReceived++;
      return;
    }
    if (h.moreFragments || h.fragmentOffset !== 0) {
      // Reassembly arrives with IP fidelity 2/2.
      stats.fragmentsReceivedUnsupported++;
      return;
    }
    const data = h.totalLength < packet.length ? packet.subarray(0, h.totalLength) : packet;
    const pkt = new PacketBuffer(data);
    pkt.nicId = nic.id;
    pkt.networkProtocol = IPV4_PROTOCOL_NUMBER;
    pkt.networkHeaderLength = h.ihl;
    pkt.transportOffset = h.ihl;
    pkt.transportProtocol = h.protocol;
    pkt.receivedAtMs = this.stack.clock.nowMs();
    pkt.packetInfo.localAddressBroadcast = match.kind === "broadcast";
    pkt.packetInfo.localAddressTemporary = match.kind === "temporary";
    if (h.protocol !== ICMPV4_PROTOCOL_NUMBER) {
      stats.unknownProtocolRcvdPackets++;
      return;
    }
    stats.packetsDelivered++;
    handleICMPv4(this.stack, nic, pkt);
  }
}
