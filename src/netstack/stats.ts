/**
 * Counters, named as gVisor names them (tcpip.Stats). Plain number fields: incrementing one is
 * the cheapest thing the hot path does. `flattenStats` turns the tree into dotted names for the
 * stats dump, metrics and tests.
 */

/** Per IP version (gVisor keeps one tcpip.IPStats; we keep one per family to tell them apart). */
export class IPStats {
  packetsReceived = 0;
  /**
   * Too short, wrong version, bad header length/checksum, bad total/payload length; a bad IPv4
   * option (answered with Parameter Problem); an IPv6 extension header or option that runs past
   * the packet, a hop-by-hop header that is not first, two Router Alert options.
   */
  malformedPacketsReceived = 0;
  invalidDestinationAddressesReceived = 0;
  invalidSourceAddressesReceived = 0;
  packetsDelivered = 0;
  packetsSent = 0;
  outgoingPacketErrors = 0;
  /**
   * Kept for compatibility: fragments are reassembled since IP fidelity 2/2, so this no longer
   * moves (IPv6 atomic fragments were always processed as whole packets).
   */
  fragmentsReceivedUnsupported = 0;
  // ---- reassembly (gVisor's fragmentation package) ----
  /** Fragments that went into reassembly (informational; each also ends in one disposition). */
  fragmentsReceived = 0;
  /** Disposition: the fragment was kept; its datagram is not complete yet. */
  fragmentsQueued = 0;
  /**
   * Informational, a subset of `malformedPacketsReceived` (gVisor's MalformedFragmentsReceived):
   * an empty fragment, a non-final fragment whose length is not a multiple of 8, a datagram over
   * the maximum size, an overlap (RFC 5722: the whole datagram is dropped), a conflicting end.
   */
  malformedFragmentsReceived = 0;
  /** Datagrams whose reassembly was abandoned because two fragments overlapped. */
  reassemblyOverlaps = 0;
  /** Datagrams reassembled and handed on (the completing fragment's disposition follows). */
  packetsReassembled = 0;
  /** Incomplete datagrams released after the reassembly timeout. */
  reassemblyTimeouts = 0;
  /** Incomplete datagrams evicted, oldest first, when reassembly memory passed the high mark. */
  reassemblyEvictions = 0;
  /** Gauge: bytes held by incomplete datagrams now (never above the high threshold after a packet). */
  reassemblyBytes = 0;
  /** Gauge: incomplete datagrams held now. */
  reassemblyPending = 0;
  // ---- fragmentation on output ----
  /** Datagrams larger than the MTU that left in fragments (each fragment counts in packetsSent). */
  packetsFragmented = 0;
  /** Fragments written to the link. */
  fragmentsSent = 0;
  /**
   * Larger than the MTU and not allowed to be fragmented (IPv4 DF): not sent; also counted in
   * `outgoingPacketErrors`.
   */
  outgoingPacketTooBig = 0;
  // ---- packet hooks (gVisor's IPTables*Dropped) ----
  /** Disposition: a prerouting hook dropped the packet. */
  preroutingDropped = 0;
  /** Disposition: an input hook dropped the (reassembled) datagram. */
  inputDropped = 0;
  /** An output hook dropped a packet the stack was sending (the writer sees success, as gVisor). */
  outputDropped = 0;
  /** A postrouting hook dropped a packet the stack was sending. */
  postroutingDropped = 0;
  /**
   * IPv6: discarded for what this stack does not implement, as RFC 8200 orders: an unrecognized
   * option whose two high bits say discard (01, 10, 11), a Routing header with Segments Left > 0.
   */
  unsupportedHeadersReceived = 0;
  /**
   * A transport protocol the stack does not handle (only ICMP is handled): answered with
   * Destination Unreachable / protocol unreachable (IPv4) or Parameter Problem code 1 (IPv6).
   */
  unknownProtocolRcvdPackets = 0;
  /** IPv6: the header chain ends in No Next Header (59); nothing to deliver (RFC 8200 §4.7). */
  noNextHeaderReceived = 0;
  /**
   * Disposition: taken silently by a transport gVisor registers but this stack does not
   * implement: IPv4 IGMP (gVisor's handleIGMP) and the other family's ICMP (IPv4 protocol 58,
   * IPv6 next header 1; gVisor's ICMP HandleUnknownDestinationPacket says handled). gVisor
   * counts them in PacketsDelivered; here that counter stays the packets ICMP counted.
   */
  otherTransportPacketsReceived = 0;
  // Options seen (gVisor's IPStats.Option*Received): informational, not a disposition.
  /** IPv4 Timestamp options received. */
  optionTimestampReceived = 0;
  /** IPv4 Record Route options received. */
  optionRecordRouteReceived = 0;
  /** IPv4 Router Alert options, IPv6 hop-by-hop Router Alert options received. */
  optionRouterAlertReceived = 0;
  /** IPv4 options of a type this stack does not know. */
  optionUnknownReceived = 0;
}

export class ICMPv4ReceivedStats {
  echoRequest = 0;
  echoReply = 0;
  dstUnreachable = 0;
  srcQuench = 0;
  redirect = 0;
  timeExceeded = 0;
  paramProblem = 0;
  timestamp = 0;
  timestampReply = 0;
  infoRequest = 0;
  infoReply = 0;
  /** Too short, bad checksum, or an unknown type. */
  invalid = 0;
}

export class ICMPv4SentStats {
  echoRequest = 0;
  echoReply = 0;
  dstUnreachable = 0;
  timeExceeded = 0;
  paramProblem = 0;
  /** The link or route refused the packet. */
  dropped = 0;
  rateLimited = 0;
  /** No route back (gVisor drops these without a counter; counted here so every reply shows). */
  noRoute = 0;
}

export class ICMPv6ReceivedStats {
  echoRequest = 0;
  echoReply = 0;
  dstUnreachable = 0;
  packetTooBig = 0;
  timeExceeded = 0;
  paramProblem = 0;
  routerSolicit = 0;
  routerAdvert = 0;
  neighborSolicit = 0;
  neighborAdvert = 0;
  redirectMsg = 0;
  multicastListenerQuery = 0;
  multicastListenerReport = 0;
  multicastListenerReportV2 = 0;
  multicastListenerDone = 0;
  invalid = 0;
  /** A type this stack does not know. */
  unrecognized = 0;
}

export class ICMPv6SentStats {
  echoRequest = 0;
  echoReply = 0;
  dstUnreachable = 0;
  packetTooBig = 0;
  timeExceeded = 0;
  paramProblem = 0;
  dropped = 0;
  rateLimited = 0;
  /** No route back (counted here; gVisor drops these without a counter). */
  noRoute = 0;
}

/** Link-level receive counters (gVisor's NICStats). */
export class NICStats {
  packetsReceived = 0;
  packetsSent = 0;
  /** Neither IPv4 nor IPv6 (empty, or another version nibble). */
  unknownL3ProtocolRcvdPackets = 0;
  /** The link refused a write. */
  txErrors = 0;
}

/** What the hooks at one point decided (see hooks.ts). */
export class HookPointStats {
  accepted = 0;
  dropped = 0;
  rewritten = 0;
  /** A hook threw: the packet is dropped (fail closed) and this counts it, besides `dropped`. */
  errors = 0;
}

export class HookStats {
  readonly prerouting = new HookPointStats();
  readonly input = new HookPointStats();
  readonly output = new HookPointStats();
  readonly postrouting = new HookPointStats();
}

export class Stats {
  readonly nic = new NICStats();
  readonly ipv4 = new IPStats();
  readonly ipv6 = new IPStats();
  readonly icmp = {
    v4: { packetsReceived: new ICMPv4ReceivedStats(), packetsSent: new ICMPv4SentStats() },
    v6: { packetsReceived: new ICMPv6ReceivedStats(), packetsSent: new ICMPv6SentStats() },
  };
  readonly hooks = new HookStats();
}

/** `{ "icmp.v4.packetsReceived.echoRequest": 3, … }`, in a stable order. */
export function flattenStats(stats: Stats): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (prefix: string, node: object): void => {
    for (const [k, v] of Object.entries(node)) {
      const name = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "number") out[name] = v;
      else if (typeof v === "object" && v !== null) walk(name, v);
    }
  };
  walk("", stats);
  return out;
}
