import { type Address, isIPv4, isV4Broadcast, isV4Loopback, isV4Multicast } from "../address.js";
import { ICMPV4_PROTOCOL_NUMBER, IPV4_PROTOCOL_NUMBER, PacketBuffer } from "../buffer.js";
import { checksum } from "../header/checksum.js";
import { ICMPV4_ECHO, ICMPV4_MIN_SIZE } from "../header/icmpv4.js";
import { IPV4_MIN_SIZE, IPv4Header } from "../header/ipv4.js";
import type { NIC } from "../nic.js";
import type { Stack } from "../stack.js";
import { returnICMPv4Error } from "./errors.js";
import { handleICMPv4 } from "./icmp.js";
import {
  OPTION_USAGE_ECHO,
  OPTION_USAGE_RECEIVE,
  type OptionUsage,
  processIPv4Options,
} from "./options.js";

/**
 * The IPv4 receive path (gVisor's ipv4.endpoint.HandlePacket + handleValidatedPacket): validate
 * the header, apply the source and destination rules, process the options, and deliver to
 * ICMP; any other protocol gets Destination Unreachable (protocol unreachable).
 */
export class IPv4Protocol {
  /**
   * Wall-clock time in ms for the Timestamp option (RFC 791: ms since midnight UT). The stack
   * clock is monotonic, so this is separate; tests replace it.
   */
  wallClockMs: () => number = Date.now;

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
    const ihl = h.ihl;
    // Plain booleans, not an object: the fast path allocates nothing beyond the PacketBuffer.
    const broadcast = match.kind === "broadcast";
    const temporary = match.kind === "temporary";
    if (h.protocol !== ICMPV4_PROTOCOL_NUMBER) {
      // Options first (gVisor's optionUsageReceive), then the protocol: only ICMP is handled.
      if (
        ihl > IPV4_MIN_SIZE &&
        this.processOptions(nic, data, broadcast, temporary, OPTION_USAGE_RECEIVE) < 0
      ) {
        return;
      }
      stats.unknownProtocolRcvdPackets++;
      // RFC 1122 §3.2.2.1: Destination Unreachable, code 2 (protocol unreachable).
      returnICMPv4Error(this.stack, nic, data, broadcast, temporary, {
        kind: "protocolUnreachable",
      });
      return;
    }
    let replyHeaderLength = IPV4_MIN_SIZE;
    if (ihl > IPV4_MIN_SIZE) {
      // ICMP processes the options knowing the message type, and only for a valid message
      // (gVisor's handleICMP): an Echo Request's Record Route and Timestamp go back in the reply.
      const msg = data.subarray(ihl);
      if (msg.length >= ICMPV4_MIN_SIZE && checksum(msg) === 0xffff) {
        const usage = msg[0] === ICMPV4_ECHO ? OPTION_USAGE_ECHO : OPTION_USAGE_RECEIVE;
        replyHeaderLength = this.processOptions(nic, data, broadcast, temporary, usage);
        if (replyHeaderLength < 0) return;
      }
    }
    const pkt = new PacketBuffer(data);
    pkt.nicId = nic.id;
    pkt.networkProtocol = IPV4_PROTOCOL_NUMBER;
    pkt.networkHeaderLength = ihl;
    pkt.transportOffset = ihl;
    pkt.transportProtocol = ICMPV4_PROTOCOL_NUMBER;
    pkt.receivedAtMs = this.stack.clock.nowMs();
    pkt.packetInfo.localAddressBroadcast = broadcast;
    pkt.packetInfo.localAddressTemporary = temporary;
    stats.packetsDelivered++;
    handleICMPv4(this.stack, nic, pkt, replyHeaderLength);
  }

  /**
   * Processes the datagram's options (gVisor's processIPOptions) and writes the resulting set
   * back into the header in place, padded with zeros, so the stages above see this host
   * recorded. Returns the header length the resulting set needs (20 + options), or -1 when the
   * datagram is dropped: a bad option is counted malformed and answered with Parameter Problem.
   */
  private processOptions(
    nic: NIC,
    data: Uint8Array,
    broadcast: boolean,
    temporary: boolean,
    usage: OptionUsage,
  ): number {
    const stats = this.stack.stats.ipv4;
    const h = new IPv4Header(data);
    // The address recorded for this host: the NIC's main address, else the destination (unless
    // that is a broadcast or multicast address, which is never recorded).
    let local: Address | null = null;
    for (const e of nic.addresses()) {
      if (isIPv4(e.address)) {
        local = e.address;
        break;
      }
    }
    if (local === null) {
      if (broadcast || isV4Multicast(h.destinationAddress)) {
        stats.invalidDestinationAddressesReceived++;
        return -1;
      }
      local = h.destinationAddress;
    }
    const result = processIPv4Options(h.options(), usage, {
      localAddress: local,
      wallClockMs: this.wallClockMs(),
      stats,
    });
    if (result.kind === "problem") {
      stats.malformedPacketsReceived++;
      if (result.needICMP) {
        returnICMPv4Error(this.stack, nic, data, broadcast, temporary, {
          kind: "parameterProblem",
          pointer: result.pointer,
        });
      }
      return -1;
    }
    const ihl = h.ihl;
    data.set(result.options, IPV4_MIN_SIZE);
    data.fill(0, IPV4_MIN_SIZE + result.options.length, ihl);
    h.checksum = 0;
    h.checksum = h.calculateChecksum();
    return IPV4_MIN_SIZE + result.options.length;
  }
}
