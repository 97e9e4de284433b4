import { type Address, isIPv4, isV4Broadcast, isV4Loopback, isV4Multicast } from "../address.js";
import {
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  IGMP_PROTOCOL_NUMBER,
  IPV4_PROTOCOL_NUMBER,
  PacketBuffer,
} from "../buffer.js";
import { type FirstFragment, hexKey, Reassembler } from "../fragmentation/reassembler.js";
import { checksum } from "../header/checksum.js";
import { ICMPV4_ECHO, ICMPV4_MIN_SIZE } from "../header/icmpv4.js";
import {
  IPV4_DESTINATION_ADDRESS_OFFSET,
  IPV4_MIN_SIZE,
  IPV4_SOURCE_ADDRESS_OFFSET,
  IPv4Header,
} from "../header/ipv4.js";
import type { NIC } from "../nic.js";
import type { NetworkProtocol, ProtocolStack } from "../protocol.js";
import { returnICMPv4Error } from "./errors.js";
import { handleICMPv4 } from "./icmp.js";
import {
  OPTION_USAGE_ECHO,
  OPTION_USAGE_RECEIVE,
  OPTION_USAGE_VERIFY,
  type OptionUsage,
  processIPv4Options,
} from "./options.js";

/** What the IPv4 reassembler keeps with a first fragment (for the timeout's ICMP error). */
export interface IPv4FragmentContext {
  readonly nicId: number;
  readonly broadcast: boolean;
  readonly temporary: boolean;
}

/** Length, version, IHL, total length and header checksum (malformed otherwise). */
function isValidIPv4(packet: Uint8Array): boolean {
  if (packet.length < IPV4_MIN_SIZE) return false;
  const h = new IPv4Header(packet);
  return h.isValid(packet.length) && h.isChecksumValid();
}

/**
 * The IPv4 receive path (gVisor's ipv4.endpoint.HandlePacket + handleValidatedPacket): validate
 * the header, apply the source and destination rules, process the options, and deliver to
 * ICMP; any other protocol gets Destination Unreachable (protocol unreachable).
 */
export class IPv4Protocol implements NetworkProtocol {
  readonly number = IPV4_PROTOCOL_NUMBER;

  /**
   * Wall-clock time in ms for the Timestamp option (RFC 791: ms since midnight UT). The stack
   * clock is monotonic, so this is separate; tests replace it.
   */
  wallClockMs: () => number = Date.now;

  /** Fragments waiting for the rest of their datagram (gVisor's ipv4 protocol.fragmentation). */
  readonly reassembler: Reassembler<IPv4FragmentContext>;

  constructor(private readonly stack: ProtocolStack) {
    const o = stack.fragmentationOptions;
    this.reassembler = new Reassembler<IPv4FragmentContext>(
      {
        timeoutMs: o.ipv4ReassemblyTimeoutMs,
        highThreshold: o.reassemblyHighThreshold,
        lowThreshold: o.reassemblyLowThreshold,
      },
      stack.stats.ipv4,
      (first) => this.onReassemblyTimeout(first),
    );
  }

  /**
   * gVisor's HandlePacket: validates the header, runs the prerouting hooks and applies the
   * source and destination rules; what is left is handleValidatedPacket's.
   */
  handlePacket(nic: NIC, received: Uint8Array): void {
    const stats = this.stack.stats.ipv4;
    stats.packetsReceived++;
    let packet = received;
    if (packet.length < IPV4_MIN_SIZE) {
      stats.malformedPacketsReceived++;
      return;
    }
    let h = new IPv4Header(packet);
    if (!h.isValid(packet.length) || !h.isChecksumValid()) {
      stats.malformedPacketsReceived++;
      return;
    }
    const hooks = this.stack.hooks;
    if (hooks.prerouting.length !== 0) {
      const out = hooks.run("prerouting", packet, IPV4_PROTOCOL_NUMBER, nic.id);
      if (out === null) {
        stats.preroutingDropped++;
        return;
      }
      if (out !== packet) {
        // A rewrite is checked like a received packet (fixing checksums is the hook's job).
        if (!isValidIPv4(out)) {
          stats.malformedPacketsReceived++;
          return;
        }
        packet = out;
        h = new IPv4Header(packet);
      }
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
    const data = h.totalLength < packet.length ? packet.subarray(0, h.totalLength) : packet;
    // Plain booleans, not an object: the fast path allocates nothing beyond the PacketBuffer.
    this.handleValidatedPacket(
      nic,
      data,
      h,
      match.kind === "broadcast",
      match.kind === "temporary",
    );
  }

  /**
   * gVisor's handleValidatedPacket: reassembles a fragment, runs the input hooks, then delivers
   * locally. `validated` is the datagram cut to its total length, `header` its header view.
   */
  private handleValidatedPacket(
    nic: NIC,
    validated: Uint8Array,
    header: IPv4Header,
    broadcast: boolean,
    temporary: boolean,
  ): void {
    const stats = this.stack.stats.ipv4;
    let data = validated;
    let h = header;
    if (h.moreFragments || h.fragmentOffset !== 0) {
      const reassembled = this.handleFragment(nic, data, broadcast, temporary);
      if (reassembled === null) return;
      data = reassembled;
      h = new IPv4Header(data);
    }
    const hooks = this.stack.hooks;
    if (hooks.input.length !== 0) {
      const out = hooks.run("input", data, IPV4_PROTOCOL_NUMBER, nic.id);
      if (out === null) {
        stats.inputDropped++;
        return;
      }
      if (out !== data) {
        if (!isValidIPv4(out)) {
          stats.malformedPacketsReceived++;
          return;
        }
        const rh = new IPv4Header(out);
        data = rh.totalLength < out.length ? out.subarray(0, rh.totalLength) : out;
        h = rh;
      }
    }
    this.deliverPacketLocally(nic, data, h.ihl, h.protocol, broadcast, temporary);
  }

  /**
   * gVisor's deliverPacketLocally: ICMP goes to its handler; IGMP and ICMPv6 (58) are taken
   * silently; anything else is answered with protocol unreachable. The options are processed
   * first (for ICMP knowing the message type).
   */
  private deliverPacketLocally(
    nic: NIC,
    data: Uint8Array,
    ihl: number,
    protocol: number,
    broadcast: boolean,
    temporary: boolean,
  ): void {
    const stats = this.stack.stats.ipv4;
    if (protocol !== ICMPV4_PROTOCOL_NUMBER) {
      // Options first (gVisor's optionUsageReceive), then the protocol: only ICMP is handled.
      if (
        ihl > IPV4_MIN_SIZE &&
        this.processOptions(nic, data, broadcast, temporary, OPTION_USAGE_RECEIVE) < 0
      ) {
        return;
      }
      // gVisor's deliverPacketLocally hands IGMP to handleIGMP before any unreachable, and 58
      // reaches its registered ICMPv6 transport, whose HandleUnknownDestinationPacket says
      // handled: neither is answered.
      if (protocol === IGMP_PROTOCOL_NUMBER || protocol === ICMPV6_PROTOCOL_NUMBER) {
        stats.otherTransportPacketsReceived++;
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
   * One fragment (gVisor's ipv4 handleValidatedPacket, fragment branch): checked, then kept by
   * the reassembler. Returns the reassembled datagram (header of the first fragment, total
   * length set, flags and offset cleared, checksum left as received) once the last piece
   * arrives, or
   * null when the fragment is counted and kept or dropped.
   */
  private handleFragment(
    nic: NIC,
    data: Uint8Array,
    broadcast: boolean,
    temporary: boolean,
  ): Uint8Array | null {
    const stats = this.stack.stats.ipv4;
    stats.fragmentsReceived++;
    const h = new IPv4Header(data);
    const ihl = h.ihl;
    const length = data.length - ihl;
    const offset = h.fragmentOffset;
    if (length <= 0) {
      // Marked as a fragment but carries nothing.
      stats.malformedPacketsReceived++;
      stats.malformedFragmentsReceived++;
      return null;
    }
    if (ihl > IPV4_MIN_SIZE && !this.verifyOptions(nic, data, broadcast, temporary)) {
      return null;
    }
    // The reassembled datagram must fit the total length field (and the configured maximum).
    if (ihl + offset + length > this.stack.fragmentationOptions.maxIPv4DatagramSize) {
      stats.malformedPacketsReceived++;
      stats.malformedFragmentsReceived++;
      return null;
    }
    const protocol = h.protocol;
    // RFC 791 §2.3: the identification is unique per source, destination and protocol.
    const key = `${hexKey(data, IPV4_SOURCE_ADDRESS_OFFSET, IPV4_DESTINATION_ADDRESS_OFFSET + 4)}/${h.id}/${protocol}`;
    const result = this.reassembler.process(
      key,
      {
        offset,
        data: data.subarray(ihl),
        more: h.moreFragments,
        protocol,
        first:
          offset === 0
            ? {
                packet: data,
                dataOffset: ihl,
                keep: ihl,
                context: { nicId: nic.id, broadcast, temporary },
              }
            : null,
      },
      this.stack.clock.nowMs(),
    );
    this.stack.fragmentsPending();
    if (result.kind === "error") {
      stats.malformedPacketsReceived++;
      stats.malformedFragmentsReceived++;
      return null;
    }
    if (result.kind === "queued") {
      stats.fragmentsQueued++;
      return null;
    }
    stats.packetsReassembled++;
    const datagram = result.datagram;
    const rh = new IPv4Header(datagram);
    rh.totalLength = datagram.length;
    // gVisor's fix-up after reassembly (deliverPacketLocally): SetTotalLength and
    // SetFlagsFragmentOffset(0, 0) (DF is cleared too), with no checksum update: an ICMP error
    // quotes the header with the first fragment's checksum.
    rh.setFlagsFragmentOffset(0, 0);
    return datagram;
  }

  /**
   * A fragment's options are checked before reassembly and left unchanged (gVisor's
   * optionUsageVerify); a bad one is counted malformed and, for a first fragment, answered with
   * Parameter Problem.
   */
  private verifyOptions(
    nic: NIC,
    data: Uint8Array,
    broadcast: boolean,
    temporary: boolean,
  ): boolean {
    const stats = this.stack.stats.ipv4;
    const h = new IPv4Header(data);
    const result = processIPv4Options(h.options(), OPTION_USAGE_VERIFY, {
      localAddress: h.destinationAddress,
      wallClockMs: this.wallClockMs(),
      stats,
    });
    if (result.kind === "ok") return true;
    stats.malformedPacketsReceived++;
    if (result.needICMP) {
      returnICMPv4Error(this.stack, nic, data, broadcast, temporary, {
        kind: "parameterProblem",
        pointer: result.pointer,
      });
    }
    return false;
  }

  /** RFC 792 / gVisor's OnReassemblyTimeout: Time Exceeded, only when fragment zero arrived. */
  private onReassemblyTimeout(first: FirstFragment<IPv4FragmentContext> | null): void {
    if (first === null) return;
    const nic = this.stack.nic(first.context.nicId);
    if (nic === undefined) return;
    returnICMPv4Error(
      this.stack,
      nic,
      first.packet,
      first.context.broadcast,
      first.context.temporary,
      { kind: "reassemblyTimeout" },
    );
  }

  /**
   * Processes the datagram's options (gVisor's processIPOptions) and writes the resulting set
   * back into the header in place, padded with zeros, so the stages above see this host
   * recorded. The header checksum is left as received, as gVisor's copy(opts, newOpts) leaves
   * it: an ICMP error quotes it so, and the Echo Reply recomputes its own. Returns the header length the resulting set needs (20 + options), or -1 when the
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
    return IPV4_MIN_SIZE + result.options.length;
  }
}

/** The IPv4 factory for StackOptions.networkProtocols (gVisor's ipv4.NewProtocol). */
export function newIPv4Protocol(stack: ProtocolStack): IPv4Protocol {
  return new IPv4Protocol(stack);
}
