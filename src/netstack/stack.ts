import {
  type Address,
  addressEquals,
  formatAddress,
  isIPv4,
  isV4Broadcast,
  isV4Multicast,
  isV6LinkLocalUnicast,
  isV6Multicast,
  type Subnet,
} from "./address.js";
import {
  ICMPV4_PROTOCOL_NUMBER,
  IPV4_PROTOCOL_NUMBER,
  IPV6_PROTOCOL_NUMBER,
  type NetworkProtocolNumber,
  type PacketBuffer,
} from "./buffer.js";
import { type Clock, systemClock } from "./clock.js";
import { DEFAULT_NETWORK_PROTOCOLS } from "./default-protocols.js";
import { type TcpipError, tcpipError } from "./errors.js";
import {
  DEFAULT_IPV4_REASSEMBLY_TIMEOUT_MS,
  DEFAULT_IPV6_REASSEMBLY_TIMEOUT_MS,
  DEFAULT_REASSEMBLY_HIGH_THRESHOLD,
  DEFAULT_REASSEMBLY_LOW_THRESHOLD,
} from "./fragmentation/reassembler.js";
import { ICMPV4_ECHO, ICMPV4_ECHO_REPLY } from "./header/icmpv4.js";
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST } from "./header/icmpv6.js";
import { IPV4_MAX_TOTAL_SIZE } from "./header/ipv4.js";
import { IPV6_MAX_PAYLOAD_SIZE, IPV6_MIN_SIZE } from "./header/ipv6.js";
import {
  type AddHookOptions,
  HookChains,
  type HookHandle,
  type HookPoint,
  type PacketHook,
} from "./hooks.js";
import { type PingEndpoint, type PingEndpointOptions, PingRegistry } from "./icmp/ping.js";
import type { LinkEndpoint } from "./link-endpoint.js";
import { NIC } from "./nic.js";
import type {
  FindRouteOptions,
  FragmentationOptions,
  NetworkProtocol,
  NetworkProtocolFactory,
  ProtocolStack,
} from "./protocol.js";
import {
  DEFAULT_ICMP_BURST,
  DEFAULT_ICMP_RATE_LIMIT,
  DEFAULT_ICMPV4_RATE_LIMITED_TYPES,
  DEFAULT_ICMPV6_RATE_LIMITED_TYPES,
  ICMPTypeMask,
  TokenBucket,
} from "./ratelimit.js";
import {
  insertRoute,
  Route,
  type RouteContext,
  type RouteEntry,
  routeFamilyMatches,
} from "./route.js";
import { type IPStats, Stats } from "./stats.js";
import {
  Decision,
  type DeliveryResult,
  type TransportEndpointID,
  type TransportProtocolHandler,
} from "./transport.js";

export interface StackOptions {
  /**
   * The network protocols, one factory per protocol number (gVisor's
   * Options.NetworkProtocols). Default: DEFAULT_NETWORK_PROTOCOLS (IPv4 and IPv6). Datagrams of
   * a version without a protocol are counted as unknownL3ProtocolRcvdPackets.
   */
  networkProtocols?: readonly NetworkProtocolFactory[];
  /** TTL / hop limit of packets the stack originates, replies included (gVisor DefaultTTLOption). */
  defaultTTL?: number;
  clock?: Clock;
  /** ICMP messages per second the shared token bucket allows (gVisor: 1000). */
  icmpRateLimit?: number;
  /** Bucket size (gVisor: 50). */
  icmpBurst?: number;
  /** ICMPv4 types subject to the limiter (gVisor: 3, 4, 11, 12). */
  icmpv4RateLimitedTypes?: readonly number[];
  /** ICMPv6 types subject to the limiter (gVisor: 0–127 except 2). */
  icmpv6RateLimitedTypes?: readonly number[];
  /** How long an incomplete IPv4 datagram is kept, ms (gVisor's ipv4.ReassembleTimeout: 30 s). */
  ipv4ReassemblyTimeoutMs?: number;
  /** How long an incomplete IPv6 packet is kept, ms (gVisor / RFC 8200 §4.5: 60 s). */
  ipv6ReassemblyTimeoutMs?: number;
  /**
   * Reassembly memory, per IP version, above which the oldest incomplete datagrams are evicted
   * (gVisor's HighFragThreshold, Linux's ipfrag_high_thresh: 4 MiB).
   */
  reassemblyHighThreshold?: number;
  /** What eviction brings the memory down to (gVisor's LowFragThreshold: 3 MiB). */
  reassemblyLowThreshold?: number;
  /**
   * The largest datagram reassembly may produce, IP header(s) included. Default and ceiling:
   * 65535 for IPv4 (the total length field) and 65575 for IPv6 (40 + the maximum payload length).
   */
  maxReassembledDatagramSize?: number;
  /**
   * How often the sweep timer releases expired reassemblies, ms (default 1000; the timer runs
   * only while fragments are held, and is unref'd). 0 turns it off: call sweepFragments().
   */
  fragmentSweepIntervalMs?: number;
}

function resolveFragmentationOptions(o: StackOptions): FragmentationOptions {
  const positive = (name: string, v: number | undefined, def: number): number => {
    if (v === undefined) return def;
    if (!Number.isFinite(v) || v < 0)
      throw new RangeError(`${name} must be a number >= 0, got ${v}`);
    return v;
  };
  const high = positive(
    "reassemblyHighThreshold",
    o.reassemblyHighThreshold,
    DEFAULT_REASSEMBLY_HIGH_THRESHOLD,
  );
  const low = Math.min(
    high,
    positive(
      "reassemblyLowThreshold",
      o.reassemblyLowThreshold,
      Math.min(high, DEFAULT_REASSEMBLY_LOW_THRESHOLD),
    ),
  );
  const max = positive("maxReassembledDatagramSize", o.maxReassembledDatagramSize, Infinity);
  return {
    ipv4ReassemblyTimeoutMs: positive(
      "ipv4ReassemblyTimeoutMs",
      o.ipv4ReassemblyTimeoutMs,
      DEFAULT_IPV4_REASSEMBLY_TIMEOUT_MS,
    ),
    ipv6ReassemblyTimeoutMs: positive(
      "ipv6ReassemblyTimeoutMs",
      o.ipv6ReassemblyTimeoutMs,
      DEFAULT_IPV6_REASSEMBLY_TIMEOUT_MS,
    ),
    reassemblyHighThreshold: high,
    reassemblyLowThreshold: low,
    maxIPv4DatagramSize: Math.min(max, IPV4_MAX_TOTAL_SIZE),
    maxIPv6DatagramSize: Math.min(max, IPV6_MIN_SIZE + IPV6_MAX_PAYLOAD_SIZE),
    sweepIntervalMs: positive("fragmentSweepIntervalMs", o.fragmentSweepIntervalMs, 1000),
  };
}

export interface NICOptions {
  name?: string;
  promiscuous?: boolean;
  spoofing?: boolean;
}

export const DEFAULT_TTL = 64;

/**
 * The userspace network stack: NICs, addresses, routes, protocol handlers, stats, the ICMP rate
 * limiter and the clock (gVisor's stack.Stack, reduced to what an ICMP Echo service needs).
 */
export class Stack implements RouteContext, ProtocolStack {
  readonly stats = new Stats();
  readonly clock: Clock;
  /** The reassembly limits in force. */
  readonly fragmentationOptions: FragmentationOptions;
  /** The packet hook chains (see hooks.ts); add hooks with addHook. */
  readonly hooks: HookChains;
  private ipv6FragmentId: number;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  private ttl: number;
  private readonly icmpLimiter: TokenBucket;
  private icmpv4Limited: ICMPTypeMask;
  private icmpv6Limited: ICMPTypeMask;
  private readonly nics = new Map<number, NIC>();
  private readonly routes: RouteEntry[] = [];
  private readonly handlers = new Map<number, TransportProtocolHandler>();
  private ipv4Id: number;
  private readonly protocols: readonly NetworkProtocol[];
  // The receive path's two protocols, looked up once (null: the stack has no such protocol).
  private readonly ipv4: NetworkProtocol | null;
  private readonly ipv6: NetworkProtocol | null;
  private readonly pings: PingRegistry;

  constructor(options: StackOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.ttl = options.defaultTTL ?? DEFAULT_TTL;
    this.icmpLimiter = new TokenBucket(
      this.clock,
      options.icmpRateLimit ?? DEFAULT_ICMP_RATE_LIMIT,
      options.icmpBurst ?? DEFAULT_ICMP_BURST,
    );
    this.icmpv4Limited = new ICMPTypeMask(
      options.icmpv4RateLimitedTypes ?? DEFAULT_ICMPV4_RATE_LIMITED_TYPES,
    );
    this.icmpv6Limited = new ICMPTypeMask(
      options.icmpv6RateLimitedTypes ?? DEFAULT_ICMPV6_RATE_LIMITED_TYPES,
    );
    this.ipv4Id = Math.floor(Math.random() * 0x10000);
    this.ipv6FragmentId = Math.floor(Math.random() * 0x100000000);
    this.fragmentationOptions = resolveFragmentationOptions(options);
    this.hooks = new HookChains(this.stats.hooks);
    const protocols: NetworkProtocol[] = [];
    for (const factory of options.networkProtocols ?? DEFAULT_NETWORK_PROTOCOLS) {
      const p = factory(this);
      if (protocols.some((q) => q.number === p.number))
        throw new RangeError(`network protocol ${p.number} is registered twice`);
      protocols.push(p);
    }
    this.protocols = protocols;
    this.ipv4 = this.networkProtocolInstance(IPV4_PROTOCOL_NUMBER) ?? null;
    this.ipv6 = this.networkProtocolInstance(IPV6_PROTOCOL_NUMBER) ?? null;
    this.pings = new PingRegistry(this);
  }

  /** The protocol instance for `number`, if the stack has one (gVisor's NetworkProtocolInstance). */
  networkProtocolInstance(number: NetworkProtocolNumber): NetworkProtocol | undefined {
    return this.protocols.find((p) => p.number === number);
  }

  get defaultTTL(): number {
    return this.ttl;
  }

  setDefaultTTL(ttl: number): TcpipError | null {
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255) {
      return tcpipError("invalidOptionValue", `default TTL must be 1–255, got ${ttl}`);
    }
    this.ttl = ttl;
    return null;
  }

  ipStats(proto: NetworkProtocolNumber): IPStats {
    return proto === IPV4_PROTOCOL_NUMBER ? this.stats.ipv4 : this.stats.ipv6;
  }

  nextIPv4Id(): number {
    this.ipv4Id = (this.ipv4Id + 1) & 0xffff;
    return this.ipv4Id;
  }

  nextIPv6FragmentId(): number {
    this.ipv6FragmentId = (this.ipv6FragmentId + 1) >>> 0;
    return this.ipv6FragmentId;
  }

  // ---- packet hooks ----

  /**
   * Adds `hook` to the chain at `point` (prerouting, input, output, postrouting); it accepts,
   * drops or rewrites each packet there. Returns a handle with the hook's counters and
   * `remove()`. See hooks.ts for where each point sits and who fixes checksums after a rewrite.
   */
  addHook(point: HookPoint, hook: PacketHook, options?: AddHookOptions): HookHandle {
    return this.hooks.add(point, hook, options);
  }

  // ---- fragment reassembly ----

  /**
   * Releases the incomplete datagrams whose reassembly timeout has passed on the stack clock
   * (counted `reassemblyTimeouts`; ICMP Time Exceeded to the sender when fragment zero came).
   * The sweep timer calls this; tests on a ManualClock call it after advancing the clock.
   * Returns how many were released.
   */
  sweepFragments(): number {
    const now = this.clock.nowMs();
    let n = 0;
    for (const p of this.protocols) n += p.reassembler.expire(now);
    if (!this.holdsFragments()) this.stopSweepTimer();
    return n;
  }

  /** Called by the network protocols after a fragment: keeps the sweep timer running. */
  fragmentsPending(): void {
    if (this.sweepTimer !== null || this.fragmentationOptions.sweepIntervalMs === 0) return;
    if (!this.holdsFragments()) return;
    const t = setInterval(() => this.sweepFragments(), this.fragmentationOptions.sweepIntervalMs);
    t.unref?.();
    this.sweepTimer = t;
  }

  private holdsFragments(): boolean {
    return this.protocols.some((p) => p.reassembler.pending !== 0);
  }

  private stopSweepTimer(): void {
    if (this.sweepTimer === null) return;
    clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  // ---- NICs and addresses ----

  createNIC(id: number, link: LinkEndpoint, options: NICOptions = {}): TcpipError | null {
    if (!Number.isInteger(id) || id <= 0)
      return tcpipError("unknownNICID", `NIC id must be a positive integer`);
    if (this.nics.has(id)) return tcpipError("duplicateAddress", `NIC ${id} exists`);
    const nic = new NIC(id, options.name ?? `nic${id}`, link, this, this.stats.nic);
    nic.promiscuous = options.promiscuous ?? false;
    nic.spoofing = options.spoofing ?? false;
    this.nics.set(id, nic);
    link.attach(nic);
    return null;
  }

  /** Detaches the NIC from its link and forgets it and its routes (the link stays open). */
  removeNIC(id: number): TcpipError | null {
    const nic = this.nics.get(id);
    if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${id}`);
    nic.link.attach(null);
    this.nics.delete(id);
    for (let i = this.routes.length - 1; i >= 0; i--)
      if (this.routes[i].nic === id) this.routes.splice(i, 1);
    return null;
  }

  nic(id: number): NIC | undefined {
    return this.nics.get(id);
  }

  ownsAddress(address: Address): boolean {
    for (const nic of this.nics.values())
      for (const e of nic.addresses()) if (addressEquals(e.address, address)) return true;
    return false;
  }

  allNICs(): NIC[] {
    return [...this.nics.values()];
  }

  addAddress(nicId: number, address: Address, prefixLength: number): TcpipError | null {
    const nic = this.nics.get(nicId);
    if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${nicId}`);
    return nic.addAddress(address, prefixLength);
  }

  removeAddress(nicId: number, address: Address): TcpipError | null {
    const nic = this.nics.get(nicId);
    if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${nicId}`);
    return nic.removeAddress(address);
  }

  setPromiscuousMode(nicId: number, on: boolean): TcpipError | null {
    const nic = this.nics.get(nicId);
    if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${nicId}`);
    nic.promiscuous = on;
    return null;
  }

  setSpoofing(nicId: number, on: boolean): TcpipError | null {
    const nic = this.nics.get(nicId);
    if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${nicId}`);
    nic.spoofing = on;
    return null;
  }

  // ---- routes ----

  addRoute(destination: Subnet, nicId: number, gateway: Address | null = null): TcpipError | null {
    if (!this.nics.has(nicId)) return tcpipError("unknownNICID", `no NIC ${nicId}`);
    insertRoute(this.routes, { destination, gateway, nic: nicId });
    return null;
  }

  /** Removes the route to exactly `destination` through `nicId` (gVisor's RemoveRoutes with one match). */
  removeRoute(destination: Subnet, nicId: number): TcpipError | null {
    const i = this.routes.findIndex((r) => r.nic === nicId && r.destination.equals(destination));
    if (i < 0) return tcpipError("noRoute", `no route to ${destination} through NIC ${nicId}`);
    this.routes.splice(i, 1);
    return null;
  }

  routeTable(): readonly RouteEntry[] {
    return this.routes;
  }

  /**
   * Finds how to reach `remote` (gVisor's FindRoute): restricted to `nicId` when non-zero; with
   * `local` given it must be an address of the chosen NIC (or the NIC spoofs, or the caller
   * allows an unassigned local address), otherwise source-address selection picks one.
   * Multicast, broadcast and link-local remotes on a given NIC need no table entry.
   */
  findRoute(
    nicId: number,
    local: Address | null,
    remote: Address,
    proto: NetworkProtocolNumber,
    options: FindRouteOptions = {},
  ): Route | TcpipError {
    const v4 = proto === IPV4_PROTOCOL_NUMBER;
    if (isIPv4(remote) !== v4 || (local !== null && isIPv4(local) !== v4)) {
      return tcpipError("badAddress", "address family does not match the protocol");
    }
    const onLinkOnly = v4
      ? isV4Multicast(remote) || isV4Broadcast(remote)
      : isV6Multicast(remote) || isV6LinkLocalUnicast(remote);
    if (nicId !== 0 && onLinkOnly) {
      const nic = this.nics.get(nicId);
      if (nic === undefined) return tcpipError("unknownNICID", `no NIC ${nicId}`);
      const src = this.localFor(nic, local, remote, options);
      if (src !== null) return new Route(nic, proto, src, remote, null, this);
      return tcpipError(
        "noRoute",
        `no source address on NIC ${nicId} for ${formatAddress(remote)}`,
      );
    }
    for (const entry of this.routes) {
      if (!routeFamilyMatches(entry, remote) || !entry.destination.contains(remote)) continue;
      if (nicId !== 0 && entry.nic !== nicId) continue;
      const nic = this.nics.get(entry.nic);
      if (nic === undefined) continue;
      const src = this.localFor(nic, local, remote, options);
      if (src === null) continue;
      return new Route(nic, proto, src, remote, entry.gateway, this);
    }
    return tcpipError(
      "noRoute",
      `no route to ${formatAddress(remote)}${nicId ? ` on NIC ${nicId}` : ""}`,
    );
  }

  private localFor(
    nic: NIC,
    local: Address | null,
    remote: Address,
    options: FindRouteOptions,
  ): Address | null {
    if (local !== null) {
      if (nic.findAddress(local) !== null || nic.spoofing || options.allowUnassignedLocal === true)
        return local;
      return null;
    }
    return nic.primaryAddress(remote)?.address ?? null;
  }

  // ---- ICMP rate limiting ----

  /** Takes a token from the stack-wide ICMP bucket (shared by IPv4 and IPv6). */
  allowICMPMessage(): boolean {
    return this.icmpLimiter.allow();
  }

  /** Whether an ICMP message of this type may be sent now (only masked types are limited). */
  allowICMPReply(proto: NetworkProtocolNumber, icmpType: number): boolean {
    const mask = proto === IPV4_PROTOCOL_NUMBER ? this.icmpv4Limited : this.icmpv6Limited;
    return mask.has(icmpType) ? this.icmpLimiter.allow() : true;
  }

  setICMPLimit(rate: number, burst: number): void {
    this.icmpLimiter.setLimit(rate, burst);
  }

  setICMPRateLimitedTypes(proto: NetworkProtocolNumber, types: readonly number[]): void {
    if (proto === IPV4_PROTOCOL_NUMBER) this.icmpv4Limited = new ICMPTypeMask(types);
    else this.icmpv6Limited = new ICMPTypeMask(types);
  }

  // ---- transport ----

  /** Whether anything above the network layer (a default handler, a ping endpoint) takes packets. */
  hasTransportConsumers(protocol: number): boolean {
    return this.handlers.has(protocol) || !this.pings.isEmpty;
  }

  /** Opens an ICMP Echo endpoint (a ping socket of the netstack). */
  openPingEndpoint(options: PingEndpointOptions): PingEndpoint | TcpipError {
    return this.pings.open(options);
  }

  /** Installs (or with null removes) the default handler of a transport protocol. */
  setTransportProtocolHandler(protocol: number, handler: TransportProtocolHandler | null): void {
    if (handler === null) this.handlers.delete(protocol);
    else this.handlers.set(protocol, handler);
  }

  /**
   * Delivers a packet to the transport layer: the protocol's default handler decides (gVisor's
   * DeliverTransportPacket with the default-handler result). Without a handler: not consumed.
   */
  deliverTransportPacket(pkt: PacketBuffer, id: TransportEndpointID): DeliveryResult {
    // Ping endpoints first: a matching endpoint takes the packet and the default handler is
    // not called; the packet counts as not consumed, so an Echo Request still gets the
    // built-in reply.
    // Only Echo messages carry an ident in bytes 4–5; for other types those bytes are a
    // gateway, a pointer or an MTU, and must not be mistaken for one.
    const type = pkt.data[pkt.transportOffset];
    const echo =
      pkt.transportProtocol === ICMPV4_PROTOCOL_NUMBER
        ? type === ICMPV4_ECHO_REPLY || type === ICMPV4_ECHO
        : type === ICMPV6_ECHO_REQUEST || type === ICMPV6_ECHO_REPLY;
    const ep = echo ? this.pings.match(pkt.networkProtocol, id) : null;
    if (ep !== null) {
      ep.deliver(pkt, id);
      return false;
    }
    const handler = this.handlers.get(pkt.transportProtocol);
    if (handler === undefined) return false;
    try {
      const result = handler(id, pkt);
      if (typeof result === "boolean" || result instanceof Decision) return result;
      // A rejected promise did not consume the packet; it never surfaces as unhandled.
      return Promise.resolve(result).then(
        (consumed) => consumed === true,
        () => false,
      );
    } catch {
      // A throwing handler did not consume the packet: the protocol's fallback runs.
      return false;
    }
  }

  // ---- NetworkReceiver (called by NICs) ----

  handleIPv4(nic: NIC, packet: Uint8Array): void {
    if (this.ipv4 !== null) this.ipv4.handlePacket(nic, packet);
    else this.stats.nic.unknownL3ProtocolRcvdPackets++;
  }

  handleIPv6(nic: NIC, packet: Uint8Array): void {
    if (this.ipv6 !== null) this.ipv6.handlePacket(nic, packet);
    else this.stats.nic.unknownL3ProtocolRcvdPackets++;
  }

  /** Detaches every NIC from its link. */
  close(): void {
    this.stopSweepTimer();
    for (const p of this.protocols) p.reassembler.clear();
    for (const nic of this.nics.values()) nic.link.attach(null);
    this.nics.clear();
    this.routes.length = 0;
  }
}
