import type { Address } from "../address.js";
import { IPV4_PROTOCOL_NUMBER } from "../buffer.js";
import { ICMPV4_ECHO, ICMPV4_PAYLOAD_OFFSET, ICMPv4Header } from "../header/icmpv4.js";
import { ICMPV6_ECHO_REQUEST, ICMPV6_PAYLOAD_OFFSET, ICMPv6Header } from "../header/icmpv6.js";
import { IPv4Header } from "../header/ipv4.js";
import { IPv6Header } from "../header/ipv6.js";
import type { ForwarderRequest } from "./forwarder.js";

/**
 * What a policy client is told about one Echo Request, read through the header views so that
 * code above the netstack (the service) never touches header bytes.
 */
export interface EchoRequestFields {
  readonly family: "ipv4" | "ipv6";
  /** IP source (a copy). */
  readonly source: Address;
  /** IP destination (a copy). */
  readonly destination: Address;
  readonly ident: number;
  readonly sequence: number;
  /** IPv4 TTL or IPv6 hop limit, as received. */
  readonly ttl: number;
  /** IPv4 TOS or IPv6 traffic class. */
  readonly tos: number;
  /** The ICMP payload after the 8-byte Echo header: a view, valid while the request is live. */
  readonly payload: Uint8Array;
  readonly payloadLength: number;
  /** The whole ICMP Echo message (8-byte header and payload): a view, valid while live. */
  readonly message: Uint8Array;
  /** The IP header before it (options, extension headers): a view, valid while live. */
  readonly networkHeader: Uint8Array;
}

/**
 * The fields of an Echo Request (ICMPv4 type 8, ICMPv6 type 128), or null for any other ICMP
 * message or an ended request. Call it while the request is live.
 */
export function echoRequestFields(req: ForwarderRequest): EchoRequestFields | null {
  let pkt: ReturnType<ForwarderRequest["packetBuffer"]>;
  try {
    pkt = req.packetBuffer();
  } catch {
    return null;
  }
  const id = req.id();
  const msg = pkt.transportMessage();
  if (pkt.networkProtocol === IPV4_PROTOCOL_NUMBER) {
    const icmp = new ICMPv4Header(msg);
    if (msg.length < ICMPV4_PAYLOAD_OFFSET || icmp.type !== ICMPV4_ECHO) return null;
    const ip = new IPv4Header(pkt.data);
    const payload = icmp.payload();
    return {
      family: "ipv4",
      source: id.remoteAddress,
      destination: id.localAddress,
      ident: icmp.ident,
      sequence: icmp.sequence,
      ttl: ip.ttl,
      tos: ip.tos,
      payload,
      payloadLength: payload.length,
      message: msg,
      networkHeader: pkt.networkHeader(),
    };
  }
  const icmp = new ICMPv6Header(msg);
  if (msg.length < ICMPV6_PAYLOAD_OFFSET || icmp.type !== ICMPV6_ECHO_REQUEST) return null;
  const ip = new IPv6Header(pkt.data);
  const payload = icmp.payload();
  return {
    family: "ipv6",
    source: id.remoteAddress,
    destination: id.localAddress,
    ident: icmp.ident,
    sequence: icmp.sequence,
    ttl: ip.hopLimit,
    tos: ip.trafficClass,
    payload,
    payloadLength: payload.length,
    message: msg,
    networkHeader: pkt.networkHeader(),
  };
}
