/**
 * PacketBuffer: one received datagram's bytes plus the offsets the stages parsed and the
 * per-packet metadata (gVisor's stack.PacketBuffer, without its buffer pooling). Views into
 * `data` are zero-copy; `clone()` is the only deep copy.
 */

/** EtherType numbers, as gVisor names network protocols. */
export const IPV4_PROTOCOL_NUMBER = 0x0800;
export const IPV6_PROTOCOL_NUMBER = 0x86dd;
export type NetworkProtocolNumber = typeof IPV4_PROTOCOL_NUMBER | typeof IPV6_PROTOCOL_NUMBER;

/** IP protocol numbers of the transports this stack knows. */
export const ICMPV4_PROTOCOL_NUMBER = 1;
/** IGMP (RFC 2236): handled by gVisor's IPv4 endpoint itself, never answered as unknown. */
export const IGMP_PROTOCOL_NUMBER = 2;
export const ICMPV6_PROTOCOL_NUMBER = 58;
export type TransportProtocolNumber = number;

/** Network-layer facts about a received packet (gVisor's NetworkPacketInfo). */
export interface NetworkPacketInfo {
  /** The destination is a broadcast address of the receiving NIC (subnet or limited). */
  localAddressBroadcast: boolean;
  /** The destination was accepted only because the NIC is promiscuous (a temporary address). */
  localAddressTemporary: boolean;
}

/**
 * The built-in reply operation a network endpoint lends to the transport layer while the
 * packet is being delivered (the seed's per-packet reply hook). Never copied by clone().
 */
export interface ReplyHook {
  /** Runs the built-in Echo Reply path once; see ForwarderRequest.reply(). */
  reply(): boolean;
}

/** Private to the netstack: the key under which a packet carries its reply hook. */
export const replyHookSlot: unique symbol = Symbol("icmpfwd.replyHook");

/** Bytes carved per pool; larger requests get an ArrayBuffer of their own. */
const POOL_BYTES = 64 * 1024;
const POOLED_MAX = 4096;
let pool = new ArrayBuffer(POOL_BYTES);
let poolUsed = 0;

/**
 * `new Uint8Array(n)` for the per-packet path: a small array is a view carved from a shared
 * pool, as Buffer.allocUnsafe does but zeroed (pool bytes are handed out once, never reused).
 * An ArrayBuffer of its own per packet cost more than the rest of the Echo path (issue #7). The
 * view's `buffer` is the pool: use `byteOffset`/`length`, never `buffer` alone.
 */
export function allocateBytes(n: number): Uint8Array {
  if (n > POOLED_MAX) return new Uint8Array(n);
  if (poolUsed + n > POOL_BYTES) {
    pool = new ArrayBuffer(POOL_BYTES);
    poolUsed = 0;
  }
  const bytes = new Uint8Array(pool, poolUsed, n);
  // 8-byte aligned, so every view may be read as wider words.
  poolUsed = (poolUsed + n + 7) & ~7;
  return bytes;
}

export class PacketBuffer {
  /** The NIC the packet arrived on (0 for locally generated packets). */
  nicId = 0;
  networkProtocol: NetworkProtocolNumber = IPV4_PROTOCOL_NUMBER;
  transportProtocol: TransportProtocolNumber = 0;
  /** Length of the IP header (IPv4 incl. options; IPv6 fixed header + extension headers). */
  networkHeaderLength = 0;
  /** Offset of the transport header in `data` (equals networkHeaderLength). */
  transportOffset = 0;
  readonly packetInfo: NetworkPacketInfo = {
    localAddressBroadcast: false,
    localAddressTemporary: false,
  };
  /** Receive time on the stack clock, in ms. */
  receivedAtMs = 0;
  [replyHookSlot]: ReplyHook | null = null;

  /** `data` is the whole IP datagram, trimmed to the length its header declares. */
  constructor(public data: Uint8Array) {}

  /** The IP header bytes (a view). */
  networkHeader(): Uint8Array {
    return this.data.subarray(0, this.networkHeaderLength);
  }

  /** The transport message: header and payload (a view). */
  transportMessage(): Uint8Array {
    return this.data.subarray(this.transportOffset);
  }

  /** A deep copy; the copy never carries the reply capability. */
  clone(): PacketBuffer {
    const c = new PacketBuffer(this.data.slice());
    c.nicId = this.nicId;
    c.networkProtocol = this.networkProtocol;
    c.transportProtocol = this.transportProtocol;
    c.networkHeaderLength = this.networkHeaderLength;
    c.transportOffset = this.transportOffset;
    c.packetInfo.localAddressBroadcast = this.packetInfo.localAddressBroadcast;
    c.packetInfo.localAddressTemporary = this.packetInfo.localAddressTemporary;
    c.receivedAtMs = this.receivedAtMs;
    return c;
  }
}
