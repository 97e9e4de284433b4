import {
  type Address,
  addressEquals,
  addressKey,
  IPV4_ALL_SYSTEMS,
  IPV4_BROADCAST,
  IPV6_ALL_NODES_MULTICAST,
  isIPv4,
  isV6LinkLocalUnicast,
  Subnet,
  solicitedNodeMulticast,
} from "./address.js";
import { type TcpipError, tcpipError } from "./errors.js";
import type { LinkEndpoint, NetworkDispatcher } from "./link-endpoint.js";
import type { NICStats } from "./stats.js";

/** One address assigned to a NIC (gVisor's AddressEndpoint). */
export interface AddressEntry {
  readonly address: Address;
  readonly prefixLength: number;
  readonly subnet: Subnet;
  /** IPv4 directed broadcast of the subnet; null for IPv6 and for /31 and /32 (RFC 3021). */
  readonly broadcast: Address | null;
  /** Permanent addresses are configured; temporary ones exist only while a packet is handled. */
  readonly kind: "permanent" | "temporary";
}

/** What the NIC hands each received datagram to: the stack's network protocols. */
export interface NetworkReceiver {
  handleIPv4(nic: NIC, packet: Uint8Array): void;
  handleIPv6(nic: NIC, packet: Uint8Array): void;
}

/** Where a destination address stands on this NIC. */
export type LocalMatch =
  | { kind: "unicast"; entry: AddressEntry }
  | { kind: "broadcast"; entry: AddressEntry | null }
  | { kind: "multicast" }
  | { kind: "temporary" }
  | { kind: "none" };

/**
 * A network interface: a link endpoint, its addresses and joined multicast groups, and the
 * promiscuous / spoofing modes (gVisor's stack.nic).
 */
export class NIC implements NetworkDispatcher {
  /** Accept packets for any unicast destination, as temporary addresses. */
  promiscuous = false;
  /** Send from addresses this NIC does not own. */
  spoofing = false;
  private readonly v4: AddressEntry[] = [];
  private readonly v6: AddressEntry[] = [];
  private readonly v4Groups = new Set<string>([addressKey(IPV4_ALL_SYSTEMS)]);
  private readonly v6Groups = new Set<string>([addressKey(IPV6_ALL_NODES_MULTICAST)]);

  constructor(
    readonly id: number,
    readonly name: string,
    readonly link: LinkEndpoint,
    private readonly receiver: NetworkReceiver,
    private readonly stats: NICStats,
  ) {}

  get mtu(): number {
    return this.link.mtu;
  }

  deliverNetworkPackets(packets: readonly Uint8Array[]): void {
    for (const p of packets) {
      this.stats.packetsReceived++;
      const version = p.length > 0 ? p[0] >> 4 : 0;
      if (version === 4) this.receiver.handleIPv4(this, p);
      else if (version === 6) this.receiver.handleIPv6(this, p);
      else this.stats.unknownL3ProtocolRcvdPackets++;
    }
  }

  /** Writes one datagram to the link, counting the outcome. */
  writePacket(packet: Uint8Array): TcpipError | null {
    const err = this.link.writePacket(packet);
    if (err !== null) {
      this.stats.txErrors++;
      return tcpipError("linkError", `${this.name}: ${err.message}`);
    }
    this.stats.packetsSent++;
    return null;
  }

  addAddress(address: Address, prefixLength: number): TcpipError | null {
    const list = isIPv4(address) ? this.v4 : this.v6;
    if (list.some((e) => addressEquals(e.address, address))) {
      return tcpipError("duplicateAddress", `address already on NIC ${this.id}`);
    }
    let subnet: Subnet;
    try {
      subnet = new Subnet(address, prefixLength);
    } catch (e) {
      return tcpipError("badAddress", (e as Error).message);
    }
    const broadcast = isIPv4(address) && prefixLength < 31 ? subnet.broadcast() : null;
    list.push({ address: address.slice(), prefixLength, subnet, broadcast, kind: "permanent" });
    if (!isIPv4(address)) this.v6Groups.add(addressKey(solicitedNodeMulticast(address)));
    return null;
  }

  removeAddress(address: Address): TcpipError | null {
    const list = isIPv4(address) ? this.v4 : this.v6;
    const i = list.findIndex((e) => addressEquals(e.address, address));
    if (i < 0) return tcpipError("badLocalAddress", "no such address on the NIC");
    list.splice(i, 1);
    if (!isIPv4(address)) {
      const group = solicitedNodeMulticast(address);
      // Another address may share the solicited-node group.
      if (!this.v6.some((e) => addressEquals(solicitedNodeMulticast(e.address), group))) {
        this.v6Groups.delete(addressKey(group));
      }
    }
    return null;
  }

  addresses(): readonly AddressEntry[] {
    return [...this.v4, ...this.v6];
  }

  joinGroup(group: Address): void {
    (isIPv4(group) ? this.v4Groups : this.v6Groups).add(addressKey(group));
  }

  leaveGroup(group: Address): void {
    (isIPv4(group) ? this.v4Groups : this.v6Groups).delete(addressKey(group));
  }

  isInGroup(group: Address): boolean {
    return (isIPv4(group) ? this.v4Groups : this.v6Groups).has(addressKey(group));
  }

  /** The permanent entry holding exactly this address. */
  findAddress(address: Address): AddressEntry | null {
    const list = isIPv4(address) ? this.v4 : this.v6;
    for (const e of list) if (addressEquals(e.address, address)) return e;
    return null;
  }

  /**
   * Classifies an IPv4 destination (gVisor's AcquireAssignedAddress with the subnet-broadcast
   * matcher, IGMP group membership, and temporary addresses on a promiscuous NIC).
   */
  matchIPv4Destination(dst: Address): LocalMatch {
    for (const e of this.v4)
      if (addressEquals(e.address, dst)) return { kind: "unicast", entry: e };
    if (addressEquals(dst, IPV4_BROADCAST)) return { kind: "broadcast", entry: null };
    for (const e of this.v4) {
      if (e.broadcast !== null && addressEquals(e.broadcast, dst))
        return { kind: "broadcast", entry: e };
    }
    if (dst[0] >= 224 && dst[0] <= 239) {
      return this.v4Groups.has(addressKey(dst)) ? { kind: "multicast" } : { kind: "none" };
    }
    return this.promiscuous ? { kind: "temporary" } : { kind: "none" };
  }

  /** Classifies an IPv6 destination: assigned, joined group, or temporary when promiscuous. */
  matchIPv6Destination(dst: Address): LocalMatch {
    for (const e of this.v6)
      if (addressEquals(e.address, dst)) return { kind: "unicast", entry: e };
    if (dst[0] === 0xff) {
      return this.v6Groups.has(addressKey(dst)) ? { kind: "multicast" } : { kind: "none" };
    }
    return this.promiscuous ? { kind: "temporary" } : { kind: "none" };
  }

  /** Whether `src` is a broadcast address of one of this NIC's IPv4 subnets. */
  isIPv4SubnetBroadcast(src: Address): boolean {
    for (const e of this.v4)
      if (e.broadcast !== null && addressEquals(e.broadcast, src)) return true;
    return false;
  }

  /**
   * Source address selection. IPv4 (gVisor's AddressableEndpointState
   * acquirePrimaryAddressRLocked): the address sharing the longest prefix with the remote,
   * whatever its subnet, the first on a tie. IPv6 (RFC 6724, the rules that matter here): same
   * scope as the remote (link-local for a link-local or link-scoped multicast remote), then the
   * longest common prefix.
   */
  primaryAddress(remote: Address): AddressEntry | null {
    if (isIPv4(remote)) {
      let best: AddressEntry | null = null;
      let bestLength = -1;
      for (const e of this.v4) {
        const length = commonPrefixLength(e.address, remote);
        if (length > bestLength) {
          best = e;
          bestLength = length;
        }
      }
      return best;
    }
    const wantLinkLocal =
      isV6LinkLocalUnicast(remote) || (remote[0] === 0xff && (remote[1] & 0x0f) <= 2);
    let best: AddressEntry | null = null;
    let bestScore = -1;
    for (const e of this.v6) {
      const scopeOk = isV6LinkLocalUnicast(e.address) === wantLinkLocal;
      const score = (scopeOk ? 256 : 0) + commonPrefixLength(e.address, remote);
      if (score > bestScore) {
        best = e;
        bestScore = score;
      }
    }
    return best;
  }
}

function commonPrefixLength(a: Address, b: Address): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ^ b[i];
    if (x === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(x) - 24;
  }
  return n;
}
