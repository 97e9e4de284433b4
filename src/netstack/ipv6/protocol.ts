import { type Address, isV6Loopback, isV6Multicast } from "../address.js";
import { ICMPV6_PROTOCOL_NUMBER, IPV6_PROTOCOL_NUMBER, PacketBuffer } from "../buffer.js";
import {
  ICMPV6_ERRONEOUS_HEADER,
  ICMPV6_UNKNOWN_NEXT_HEADER,
  ICMPV6_UNKNOWN_OPTION,
} from "../header/icmpv6.js";
import {
  IPV6_DESTINATION_ADDRESS_OFFSET,
  IPV6_MIN_SIZE,
  IPV6_NEXT_HEADER_OFFSET,
  IPv6Header,
} from "../header/ipv6.js";
import {
  IPV6_EXT_HDR_DESTINATION_OPTIONS,
  IPV6_EXT_HDR_FRAGMENT,
  IPV6_EXT_HDR_HOP_BY_HOP,
  IPV6_EXT_HDR_NEXT_HEADER_OFFSET,
  IPV6_EXT_HDR_OPTIONS_OFFSET,
  IPV6_EXT_HDR_ROUTING,
  IPV6_NO_NEXT_HEADER,
  IPV6_OPTION_ACTION_DISCARD_SEND_ICMP,
  IPV6_OPTION_ACTION_DISCARD_SEND_ICMP_NO_MULTICAST,
  IPV6_OPTION_ACTION_SKIP,
  IPV6_OPTION_PAD1,
  IPV6_OPTION_PADN,
  IPV6_OPTION_ROUTER_ALERT,
  IPV6_OPTION_ROUTER_ALERT_DATA_LENGTH,
  IPV6_ROUTING_SEGMENTS_LEFT_OFFSET,
  IPV6_ROUTING_TYPE_OFFSET,
  IPv6FragmentHeader,
  ipv6ExtensionHeaderLength,
  ipv6OptionUnknownAction,
  isIPv6ExtensionHeader,
} from "../header/ipv6-extension-headers.js";
import type { NIC } from "../nic.js";
import type { Stack } from "../stack.js";
import { returnICMPv6Error } from "./errors.js";
import { handleICMPv6 } from "./icmp.js";

/**
 * The IPv6 receive path (gVisor's ipv6.endpoint.HandlePacket): validate the fixed header, apply
 * the source and destination rules, walk the extension headers (RFC 8200), deliver ICMPv6. The
 * kernel's own chatter on a TUN (router
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
    const payloadEnd = IPV6_MIN_SIZE + h.payloadLength;
    const data = payloadEnd < packet.length ? packet.subarray(0, payloadEnd) : packet;
    const temporary = match.kind === "temporary";
    let transportOffset = IPV6_MIN_SIZE;
    if (h.nextHeader !== ICMPV6_PROTOCOL_NUMBER) {
      // Extension headers or another upper layer: the slow path (the fast path allocates
      // nothing more for a plain ICMPv6 packet).
      transportOffset = this.processExtensionHeaders(nic, data, h.nextHeader, temporary);
      if (transportOffset < 0) return;
    }
    const pkt = new PacketBuffer(data);
    pkt.nicId = nic.id;
    pkt.networkProtocol = IPV6_PROTOCOL_NUMBER;
    pkt.networkHeaderLength = transportOffset;
    pkt.transportOffset = transportOffset;
    pkt.transportProtocol = ICMPV6_PROTOCOL_NUMBER;
    pkt.receivedAtMs = this.stack.clock.nowMs();
    pkt.packetInfo.localAddressTemporary = temporary;
    stats.packetsDelivered++;
    handleICMPv6(this.stack, nic, pkt);
  }

  /**
   * Walks the extension header chain as RFC 8200 §4 orders and gVisor's
   * processExtensionHeaders does; returns the offset of the ICMPv6 header, or -1 once the
   * packet is counted and dropped (or answered with a Parameter Problem). Never throws.
   */
  private processExtensionHeaders(
    nic: NIC,
    data: Uint8Array,
    firstNextHeader: number,
    temporary: boolean,
  ): number {
    const stats = this.stack.stats.ipv6;
    const end = data.length;
    const dst = data.subarray(
      IPV6_DESTINATION_ADDRESS_OFFSET,
      IPV6_DESTINATION_ADDRESS_OFFSET + 16,
    );
    const multicast = isV6Multicast(dst);
    const paramProblem = (code: number, pointer: number, respondToMulticast = false): void =>
      returnICMPv6Error(this.stack, nic, data, temporary, {
        kind: "parameterProblem",
        code,
        pointer,
        respondToMulticast,
      });
    let next = firstNextHeader;
    let offset = IPV6_MIN_SIZE;
    // The offset of the header whose Next Header field holds `next` (0: the fixed header).
    let previous = 0;
    let routerAlert = false;
    for (;;) {
      if (next === ICMPV6_PROTOCOL_NUMBER) return offset;
      if (next === IPV6_NO_NEXT_HEADER) {
        stats.noNextHeaderReceived++;
        return -1;
      }
      if (!isIPv6ExtensionHeader(next)) {
        // RFC 8200 §4: an unrecognized Next Header gets Parameter Problem code 1, pointing at it.
        stats.unknownProtocolRcvdPackets++;
        paramProblem(
          ICMPV6_UNKNOWN_NEXT_HEADER,
          previous === 0 ? IPV6_NEXT_HEADER_OFFSET : previous,
        );
        return -1;
      }
      const length = ipv6ExtensionHeaderLength(data, offset, end, next);
      if (length < 0 || offset + length > end) {
        stats.malformedPacketsReceived++;
        return -1;
      }
      if (next === IPV6_EXT_HDR_HOP_BY_HOP && previous !== 0) {
        // RFC 8200 §4.1: hop-by-hop options only immediately after the fixed header.
        stats.malformedPacketsReceived++;
        paramProblem(ICMPV6_UNKNOWN_NEXT_HEADER, previous);
        return -1;
      }
      switch (next) {
        case IPV6_EXT_HDR_HOP_BY_HOP:
        case IPV6_EXT_HDR_DESTINATION_OPTIONS: {
          const hopByHop = next === IPV6_EXT_HDR_HOP_BY_HOP;
          const optionsEnd = offset + length;
          let i = offset + IPV6_EXT_HDR_OPTIONS_OFFSET;
          while (i < optionsEnd) {
            const type = data[i];
            if (type === IPV6_OPTION_PAD1) {
              i++;
              continue;
            }
            if (i + 2 > optionsEnd || i + 2 + data[i + 1] > optionsEnd) {
              stats.malformedPacketsReceived++;
              return -1;
            }
            const dataLength = data[i + 1];
            if (type === IPV6_OPTION_ROUTER_ALERT) {
              // RFC 2711: a 2-octet value, at most one per packet.
              if (
                dataLength !== IPV6_OPTION_ROUTER_ALERT_DATA_LENGTH ||
                (hopByHop && routerAlert)
              ) {
                stats.malformedPacketsReceived++;
                return -1;
              }
              if (hopByHop) {
                routerAlert = true;
                stats.optionRouterAlertReceived++;
              }
            } else if (type !== IPV6_OPTION_PADN) {
              const action = ipv6OptionUnknownAction(type);
              if (action !== IPV6_OPTION_ACTION_SKIP) {
                stats.unsupportedHeadersReceived++;
                if (
                  action === IPV6_OPTION_ACTION_DISCARD_SEND_ICMP ||
                  (action === IPV6_OPTION_ACTION_DISCARD_SEND_ICMP_NO_MULTICAST && !multicast)
                ) {
                  paramProblem(ICMPV6_UNKNOWN_OPTION, i, true);
                }
                return -1;
              }
            }
            i += 2 + dataLength;
          }
          break;
        }
        case IPV6_EXT_HDR_ROUTING:
          // No routing type is implemented: with segments left it cannot be honoured
          // (RFC 8200 §4.4: Parameter Problem code 0 at the Routing Type); without, ignored.
          if (data[offset + IPV6_ROUTING_SEGMENTS_LEFT_OFFSET] !== 0) {
            stats.unsupportedHeadersReceived++;
            paramProblem(ICMPV6_ERRONEOUS_HEADER, offset + IPV6_ROUTING_TYPE_OFFSET);
            return -1;
          }
          break;
        case IPV6_EXT_HDR_FRAGMENT:
          // An atomic fragment (RFC 6946) is processed as the whole packet it is; reassembly of
          // real fragments arrives with IP fidelity 2/2.
          if (!new IPv6FragmentHeader(data, offset).isAtomic) {
            stats.fragmentsReceivedUnsupported++;
            return -1;
          }
          break;
      }
      previous = offset;
      next = data[offset + IPV6_EXT_HDR_NEXT_HEADER_OFFSET];
      offset += length;
    }
  }
}
