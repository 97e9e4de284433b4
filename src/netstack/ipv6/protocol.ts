import { type Address, isV4Mapped, isV6Loopback, isV6Multicast } from "../address.js";
import {
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  IPV6_PROTOCOL_NUMBER,
  PacketBuffer,
} from "../buffer.js";
import {
  type FirstFragment,
  FRAGMENT_BLOCK_SIZE,
  hexKey,
  Reassembler,
} from "../fragmentation/reassembler.js";
import {
  ICMPV6_ERRONEOUS_HEADER,
  ICMPV6_UNKNOWN_NEXT_HEADER,
  ICMPV6_UNKNOWN_OPTION,
} from "../header/icmpv6.js";
import {
  IPV6_DESTINATION_ADDRESS_OFFSET,
  IPV6_MAX_PAYLOAD_SIZE,
  IPV6_MIN_SIZE,
  IPV6_NEXT_HEADER_OFFSET,
  IPV6_PAYLOAD_LENGTH_OFFSET,
  IPV6_SOURCE_ADDRESS_OFFSET,
  IPv6Header,
} from "../header/ipv6.js";
import {
  findIPv6UpperLayer,
  IPV6_EXT_HDR_DESTINATION_OPTIONS,
  IPV6_EXT_HDR_FRAGMENT,
  IPV6_EXT_HDR_HOP_BY_HOP,
  IPV6_EXT_HDR_NEXT_HEADER_OFFSET,
  IPV6_EXT_HDR_OPTIONS_OFFSET,
  IPV6_EXT_HDR_ROUTING,
  IPV6_FRAGMENT_EXT_HDR_LENGTH,
  IPV6_FRAGMENT_OFFSET_FIELD,
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
import type { NetworkProtocol, ProtocolStack } from "../protocol.js";
import { returnICMPv6Error } from "./errors.js";
import { handleICMPv6 } from "./icmp.js";

/** What the IPv6 reassembler keeps with a first fragment (for the timeout's ICMP error). */
export interface IPv6FragmentContext {
  readonly nicId: number;
  readonly temporary: boolean;
}

const EMPTY = new Uint8Array(0);

function isValidIPv6(packet: Uint8Array): boolean {
  return packet.length >= IPV6_MIN_SIZE && new IPv6Header(packet).isValid(packet.length);
}

/**
 * The IPv6 receive path (gVisor's ipv6.endpoint.HandlePacket): validate the fixed header, apply
 * the source and destination rules, walk the extension headers (RFC 8200), deliver ICMPv6. The
 * kernel's own chatter on a TUN (router
 * solicitations to ff02::2, MLD reports to ff02::16) is for groups this host has not joined and
 * ends, counted, as an invalid destination.
 */
export class IPv6Protocol implements NetworkProtocol {
  readonly number = IPV6_PROTOCOL_NUMBER;

  /** Fragments waiting for the rest of their packet (gVisor's ipv6 protocol.fragmentation). */
  readonly reassembler: Reassembler<IPv6FragmentContext>;
  /**
   * The packet the last extension header walk ended on: the one it was given, or the packet
   * reassembled from fragments (a field, so the fast path allocates no result object).
   */
  private walked: Uint8Array = EMPTY;

  constructor(private readonly stack: ProtocolStack) {
    const o = stack.fragmentationOptions;
    this.reassembler = new Reassembler<IPv6FragmentContext>(
      {
        timeoutMs: o.ipv6ReassemblyTimeoutMs,
        highThreshold: o.reassemblyHighThreshold,
        lowThreshold: o.reassemblyLowThreshold,
      },
      stack.stats.ipv6,
      (first) => this.onReassemblyTimeout(first),
    );
  }

  /**
   * gVisor's HandlePacket: validates the fixed header, runs the prerouting hooks and applies
   * the source and destination rules; what is left is handleValidatedPacket's.
   */
  handlePacket(nic: NIC, received: Uint8Array): void {
    const stats = this.stack.stats.ipv6;
    stats.packetsReceived++;
    let packet = received;
    if (packet.length < IPV6_MIN_SIZE) {
      stats.malformedPacketsReceived++;
      return;
    }
    let h = new IPv6Header(packet);
    if (!h.isValid(packet.length)) {
      stats.malformedPacketsReceived++;
      return;
    }
    // gVisor's checkV4Mapped (RFC 6890 §2.2.3), before the prerouting hooks: an IPv4-mapped
    // source or destination is dropped. gVisor counts both when both are mapped; one counter
    // here, so every packet still ends in exactly one.
    if (isV4Mapped(h.sourceAddress)) {
      stats.invalidSourceAddressesReceived++;
      return;
    }
    if (isV4Mapped(h.destinationAddress)) {
      stats.invalidDestinationAddressesReceived++;
      return;
    }
    const hooks = this.stack.hooks;
    if (hooks.prerouting.length !== 0) {
      const out = hooks.run("prerouting", packet, IPV6_PROTOCOL_NUMBER, nic.id);
      if (out === null) {
        stats.preroutingDropped++;
        return;
      }
      if (out !== packet) {
        if (!isValidIPv6(out)) {
          stats.malformedPacketsReceived++;
          return;
        }
        packet = out;
        h = new IPv6Header(packet);
      }
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
    this.handleValidatedPacket(nic, data, h.nextHeader, match.kind === "temporary");
  }

  /**
   * gVisor's handleValidatedPacket: walks the extension headers (reassembling fragments), runs
   * the input hooks, then delivers ICMPv6. `validated` is the packet cut to its payload length,
   * `nextHeader` its fixed header's Next Header.
   */
  private handleValidatedPacket(
    nic: NIC,
    validated: Uint8Array,
    nextHeader: number,
    temporary: boolean,
  ): void {
    const stats = this.stack.stats.ipv6;
    let data = validated;
    let transportOffset = IPV6_MIN_SIZE;
    if (nextHeader !== ICMPV6_PROTOCOL_NUMBER) {
      // Extension headers or another upper layer: the slow path (the fast path allocates
      // nothing more for a plain ICMPv6 packet). Fragments are reassembled on the way.
      transportOffset = this.processExtensionHeaders(nic, data, nextHeader, temporary);
      data = this.walked;
      this.walked = EMPTY;
      if (transportOffset < 0) return;
    }
    const hooks = this.stack.hooks;
    if (hooks.input.length !== 0) {
      const out = hooks.run("input", data, IPV6_PROTOCOL_NUMBER, nic.id);
      if (out === null) {
        stats.inputDropped++;
        return;
      }
      if (out !== data) {
        // The rewrite keeps the header chain's layout: only the fixed header is checked again.
        if (!isValidIPv6(out) || out.length < transportOffset) {
          stats.malformedPacketsReceived++;
          return;
        }
        const end = IPV6_MIN_SIZE + new IPv6Header(out).payloadLength;
        data = end < out.length ? out.subarray(0, end) : out;
      }
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
    received: Uint8Array,
    firstNextHeader: number,
    temporary: boolean,
  ): number {
    const stats = this.stack.stats.ipv6;
    let data = received;
    this.walked = data;
    let end = data.length;
    const dst = data.subarray(
      IPV6_DESTINATION_ADDRESS_OFFSET,
      IPV6_DESTINATION_ADDRESS_OFFSET + 16,
    );
    const multicast = isV6Multicast(dst);
    // After reassembly `data` is the first fragment's headers as received (Fragment header
    // included) followed by the merged data, which starts at `merged` (-1 before). gVisor's
    // reassembler returns that packet, and an error about it quotes it so; its pointers come
    // from a fresh IPv6PayloadIterator over the merged data, which counts from 40.
    let merged = -1;
    // The header whose Next Header named the Fragment header (0: the fixed header).
    let beforeFragment = 0;
    const pointerOf = (at: number): number => (merged < 0 ? at : at - merged + IPV6_MIN_SIZE);
    const paramProblem = (code: number, pointer: number, respondToMulticast = false): void =>
      returnICMPv6Error(this.stack, nic, data, temporary, {
        kind: "parameterProblem",
        code,
        pointer: pointerOf(pointer),
        respondToMulticast,
      });
    let next = firstNextHeader;
    let offset = IPV6_MIN_SIZE;
    // The offset of the header whose Next Header field holds `next` (0: the fixed header).
    let previous = 0;
    let routerAlert = false;
    for (;;) {
      if (next === ICMPV6_PROTOCOL_NUMBER) {
        if (merged < 0) return offset;
        // Handed up as the unfragmented packet it was (the Fragment header removed), as before.
        return this.unfragmented(data, merged, beforeFragment, offset);
      }
      if (next === IPV6_NO_NEXT_HEADER) {
        stats.noNextHeaderReceived++;
        return -1;
      }
      if (next === ICMPV4_PROTOCOL_NUMBER) {
        // gVisor's registered ICMPv4 transport takes next header 1 (its
        // HandleUnknownDestinationPacket says handled): delivered, never answered.
        stats.otherTransportPacketsReceived++;
        return -1;
      }
      if (!isIPv6ExtensionHeader(next)) {
        // RFC 8200 §4: an unrecognized Next Header gets Parameter Problem code 1, pointing at it.
        stats.unknownProtocolRcvdPackets++;
        if (merged < 0) {
          paramProblem(
            ICMPV6_UNKNOWN_NEXT_HEADER,
            previous === 0 ? IPV6_NEXT_HEADER_OFFSET : previous,
          );
        } else {
          // gVisor's processIPv6RawPayloadHeader consumes the headers after the Fragment
          // header before returnError: the quote is the first fragment's headers, then the
          // upper layer. The fresh iterator's first header has offset 0, which points at 6.
          const quote = new Uint8Array(merged + data.length - offset);
          quote.set(data.subarray(0, merged), 0);
          quote.set(data.subarray(offset), merged);
          returnICMPv6Error(this.stack, nic, quote, temporary, {
            kind: "parameterProblem",
            code: ICMPV6_UNKNOWN_NEXT_HEADER,
            pointer:
              previous === merged - IPV6_FRAGMENT_EXT_HDR_LENGTH
                ? IPV6_NEXT_HEADER_OFFSET
                : pointerOf(previous),
            respondToMulticast: false,
          });
        }
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
        case IPV6_EXT_HDR_FRAGMENT: {
          // An atomic fragment (RFC 6946) is processed as the whole packet it is, outside
          // reassembly.
          if (new IPv6FragmentHeader(data, offset).isAtomic) break;
          const reassembled = this.handleFragment(nic, data, offset, temporary);
          if (reassembled === null) return -1;
          // The walk goes on in the reassembled packet, at what followed the Fragment header,
          // named by the first fragment's Fragment header (RFC 8200 §4.5).
          data = reassembled;
          this.walked = data;
          end = data.length;
          beforeFragment = previous;
          previous = offset;
          next = data[offset];
          offset += IPV6_FRAGMENT_EXT_HDR_LENGTH;
          merged = offset;
          continue;
        }
      }
      previous = offset;
      next = data[offset + IPV6_EXT_HDR_NEXT_HEADER_OFFSET];
      offset += length;
    }
  }

  /**
   * The reassembled packet `data` (first fragment's headers, Fragment header at
   * `merged - 8`, merged data from `merged`) as the unfragmented packet it stands for: the
   * Fragment header removed, its Next Header moved into the header before it
   * (`beforeFragment`, 0: the fixed header), the payload length set. Becomes `walked`; returns
   * where the upper layer at `upper` (an offset in `data`) now starts.
   */
  private unfragmented(
    data: Uint8Array,
    merged: number,
    beforeFragment: number,
    upper: number,
  ): number {
    const fragmentAt = merged - IPV6_FRAGMENT_EXT_HDR_LENGTH;
    const packet = new Uint8Array(data.length - IPV6_FRAGMENT_EXT_HDR_LENGTH);
    packet.set(data.subarray(0, fragmentAt), 0);
    packet.set(data.subarray(merged), fragmentAt);
    packet[beforeFragment === 0 ? IPV6_NEXT_HEADER_OFFSET : beforeFragment] = data[fragmentAt];
    const payloadLength = packet.length - IPV6_MIN_SIZE;
    packet[IPV6_PAYLOAD_LENGTH_OFFSET] = payloadLength >>> 8;
    packet[IPV6_PAYLOAD_LENGTH_OFFSET + 1] = payloadLength & 0xff;
    this.walked = packet;
    return upper - IPV6_FRAGMENT_EXT_HDR_LENGTH;
  }

  /**
   * One fragment (gVisor's ipv6 processExtensionHeaders, Fragment case, RFC 8200 §4.5): checked,
   * then kept by the reassembler. `fragmentOffset` is where the Fragment header starts (the
   * unfragmentable part ends there). Returns the reassembled packet as gVisor's reassembler
   * does — the first fragment's headers as received (payload length, Next Header, the Fragment
   * header) followed by the merged data — or null once the fragment is counted and kept or
   * dropped.
   */
  private handleFragment(
    nic: NIC,
    data: Uint8Array,
    fragmentOffset: number,
    temporary: boolean,
  ): Uint8Array | null {
    const stats = this.stack.stats.ipv6;
    stats.fragmentsReceived++;
    const fh = new IPv6FragmentHeader(data, fragmentOffset);
    const dataStart = fragmentOffset + IPV6_FRAGMENT_EXT_HDR_LENGTH;
    const length = data.length - dataStart;
    const offset = fh.fragmentOffset;
    const malformed = (): null => {
      stats.malformedPacketsReceived++;
      stats.malformedFragmentsReceived++;
      return null;
    };
    if (
      offset === 0 &&
      length > 0 &&
      findIPv6UpperLayer(data, fh.nextHeader, dataStart, data.length) === null
    ) {
      // The first fragment holds every header up to the upper-layer header (RFC 8200 §4.5).
      return malformed();
    }
    if (length <= 0) return malformed();
    const paramProblem = (pointer: number): void =>
      returnICMPv6Error(this.stack, nic, data, temporary, {
        kind: "parameterProblem",
        code: ICMPV6_ERRONEOUS_HEADER,
        pointer,
        respondToMulticast: false,
      });
    if (fh.more && length % FRAGMENT_BLOCK_SIZE !== 0) {
      // RFC 8200 §4.5: Parameter Problem code 0 at the Payload Length field.
      malformed();
      paramProblem(IPV6_PAYLOAD_LENGTH_OFFSET);
      return null;
    }
    if (offset + length > IPV6_MAX_PAYLOAD_SIZE) {
      // RFC 8200 §4.5: Parameter Problem code 0 at the Fragment Offset field.
      malformed();
      paramProblem(fragmentOffset + IPV6_FRAGMENT_OFFSET_FIELD);
      return null;
    }
    // The reassembled packet must also fit the payload length field and the configured maximum.
    if (
      fragmentOffset - IPV6_MIN_SIZE + offset + length > IPV6_MAX_PAYLOAD_SIZE ||
      fragmentOffset + offset + length > this.stack.fragmentationOptions.maxIPv6DatagramSize
    ) {
      return malformed();
    }
    // RFC 8200 §4.5: fragments of one packet share source, destination and Identification.
    const key = `${hexKey(data, IPV6_SOURCE_ADDRESS_OFFSET, IPV6_DESTINATION_ADDRESS_OFFSET + 16)}/${fh.id}`;
    const result = this.reassembler.process(
      key,
      {
        offset,
        data: data.subarray(dataStart),
        more: fh.more,
        protocol: fh.nextHeader,
        first:
          offset === 0
            ? {
                packet: data,
                dataOffset: dataStart,
                keep: dataStart,
                context: { nicId: nic.id, temporary },
              }
            : null,
      },
      this.stack.clock.nowMs(),
    );
    this.stack.fragmentsPending();
    if (result.kind === "error") return malformed();
    if (result.kind === "queued") {
      stats.fragmentsQueued++;
      return null;
    }
    stats.packetsReassembled++;
    return result.datagram;
  }

  /** RFC 8200 §4.5 / gVisor's OnReassemblyTimeout: Time Exceeded code 1, if fragment zero came. */
  private onReassemblyTimeout(first: FirstFragment<IPv6FragmentContext> | null): void {
    if (first === null) return;
    const nic = this.stack.nic(first.context.nicId);
    if (nic === undefined) return;
    returnICMPv6Error(this.stack, nic, first.packet, first.context.temporary, {
      kind: "reassemblyTimeout",
    });
  }
}

/** The IPv6 factory for StackOptions.networkProtocols (gVisor's ipv6.NewProtocol). */
export function newIPv6Protocol(stack: ProtocolStack): IPv6Protocol {
  return new IPv6Protocol(stack);
}
