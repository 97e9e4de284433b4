import {
  IPV6_PROTOCOL_NUMBER,
  type NetworkPacketInfo,
  type PacketBuffer,
  replyHookSlot,
} from "../buffer.js";
import {
  Decision,
  type HandlerResult,
  type TransportEndpointID,
  type TransportProtocolHandler,
} from "../transport.js";

/** Thrown by ForwarderRequest.packetBuffer() once the request has ended. */
export class RequestExpired extends Error {
  override readonly name = "RequestExpired";
  constructor() {
    super(
      "ForwarderRequest expired: the packet is valid only while the handler runs (for an async handler, until its promise settles); copy what you need, or clone() the PacketBuffer inside the handler",
    );
  }
}

/**
 * One packet handed to a Forwarder's handler (the seed's icmp.ForwarderRequest). Valid while the
 * handler runs, or until its promise settles; afterwards id() and packetInfo() still answer
 * (they are copies), packetBuffer() throws RequestExpired and reply() returns false.
 */
export class ForwarderRequest {
  private live = true;
  private readonly endpointId: TransportEndpointID;
  private readonly info: Readonly<NetworkPacketInfo>;
  private readonly nic: number;

  constructor(
    id: TransportEndpointID,
    private pkt: PacketBuffer | null,
  ) {
    // The stack hands every handler an id of its own (copied addresses, a fresh object).
    this.endpointId = Object.freeze(id);
    this.info = packetInfoCopy((pkt as PacketBuffer).packetInfo);
    this.nic = (pkt as PacketBuffer).nicId;
  }

  /** localAddress = IP destination, localPort = ICMP ident, remoteAddress = IP source. */
  id(): TransportEndpointID {
    return this.endpointId;
  }

  /** The packet itself, only while the request is live. */
  packetBuffer(): PacketBuffer {
    if (!this.live || this.pkt === null) throw new RequestExpired();
    return this.pkt;
  }

  /** Network-layer metadata: NIC-level flags such as localAddressTemporary. */
  packetInfo(): Readonly<NetworkPacketInfo> {
    return this.info;
  }

  /** The NIC the packet arrived on. */
  nicId(): number {
    return this.nic;
  }

  /**
   * Asks the netstack to send its built-in Echo Reply for this request, once. True when the
   * reply capability was active and the built-in path ran (the rate limiter or a missing route
   * may still drop the packet: the stats show it); false for anything that is not an Echo
   * Request, or after the request ended. Idempotent.
   */
  reply(): boolean {
    if (!this.live || this.pkt === null) return false;
    const hook = this.pkt[replyHookSlot];
    return hook === null ? false : hook.reply();
  }

  /** @internal Ends the request: the packet is released. */
  end(): void {
    this.live = false;
    this.pkt = null;
  }
}

// Every request's packetInfo() is one of these four frozen values: a frozen copy per request
// cost more than the rest of the request together (issue #7).
const PACKET_INFOS: readonly Readonly<NetworkPacketInfo>[] = [false, true].flatMap((broadcast) =>
  [false, true].map((temporary) =>
    Object.freeze({ localAddressBroadcast: broadcast, localAddressTemporary: temporary }),
  ),
);

function packetInfoCopy(i: NetworkPacketInfo): Readonly<NetworkPacketInfo> {
  return PACKET_INFOS[(i.localAddressBroadcast ? 2 : 0) + (i.localAddressTemporary ? 1 : 0)];
}

/**
 * Answers now (boolean), later by promise, or later by Decision (the promise-free form for hot
 * paths: settle it once with the answer).
 */
export type ForwarderHandler = (request: ForwarderRequest) => HandlerResult;

export interface ForwarderOptions {
  /** Most requests held by unsettled async handlers at once (default 1024). */
  maxHeld?: number;
  /**
   * What a request over the bound gets without reaching the handler: "fallthrough" (not
   * consumed: the protocol's fallback, i.e. the built-in reply, runs) or "consume" (dropped), so
   * a fail-closed embedder stays fail-closed.
   */
  onOverflow?: "fallthrough" | "consume";
}

export interface ForwarderStats {
  /** Packets handed to the handler. */
  handled: number;
  /** Handler answered true (consumed). */
  consumed: number;
  /** Handler answered false (or threw / rejected). */
  notConsumed: number;
  /** The handler threw synchronously (counted as false). */
  thrown: number;
  /** An async handler's promise rejected (counted as false). */
  rejected: number;
  /** Requests refused because maxHeld were held; they got onOverflow. */
  overflow: number;
  /** The IPv6 share of `overflow` (the rest came over IPv4). */
  overflowIpv6: number;
  /** Requests currently held by unsettled promises. */
  held: number;
}

export const DEFAULT_MAX_HELD = 1024;

/**
 * The seed's icmp.Forwarder: `stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER,
 * forwarder.handlePacket)` (and the same for ICMPv6) hands every ICMP packet no ping endpoint
 * took to `handler`. The handler's boolean keeps its SetTransportProtocolHandler meaning (true =
 * consumed); reply() is the separate, explicit request for the built-in Echo Reply.
 */
export class Forwarder {
  readonly stats: ForwarderStats = {
    handled: 0,
    consumed: 0,
    notConsumed: 0,
    thrown: 0,
    rejected: 0,
    overflow: 0,
    overflowIpv6: 0,
    held: 0,
  };
  private readonly maxHeld: number;
  private overflowConsumes: boolean;

  constructor(
    private readonly handler: ForwarderHandler,
    options: ForwarderOptions = {},
  ) {
    this.maxHeld = options.maxHeld ?? DEFAULT_MAX_HELD;
    if (!Number.isInteger(this.maxHeld) || this.maxHeld < 0) {
      throw new RangeError(`maxHeld must be a non-negative integer, got ${options.maxHeld}`);
    }
    this.overflowConsumes = (options.onOverflow ?? "fallthrough") === "consume";
  }

  /** What a request over the bound gets. */
  get overflowAction(): "fallthrough" | "consume" {
    return this.overflowConsumes ? "consume" : "fallthrough";
  }

  /** Changes what requests over the bound get from now on (an embedder's live reload). */
  setOverflowAction(action: "fallthrough" | "consume"): void {
    this.overflowConsumes = action === "consume";
  }

  readonly handlePacket: TransportProtocolHandler = (id, pkt) => {
    const s = this.stats;
    if (s.held >= this.maxHeld) {
      s.overflow++;
      if (pkt.networkProtocol === IPV6_PROTOCOL_NUMBER) s.overflowIpv6++;
      return this.overflowConsumes;
    }
    s.handled++;
    const req = new ForwarderRequest(id, pkt);
    let result: HandlerResult;
    try {
      result = this.handler(req);
    } catch {
      s.thrown++;
      return this.settle(req, false);
    }
    if (typeof result === "boolean") return this.settle(req, result);
    s.held++;
    if (result instanceof Decision) {
      // The handler's own Decision goes on down: callbacks run in the order registered, so the
      // request has ended (and is counted) before the network layer acts on the answer. A
      // second Decision and closure per request cost more than the rest of this function.
      result.onSettled((consumed) => {
        s.held--;
        this.settle(req, consumed === true);
      });
      return result;
    }
    return Promise.resolve(result).then(
      (consumed) => {
        s.held--;
        return this.settle(req, consumed === true);
      },
      () => {
        s.held--;
        s.rejected++;
        return this.settle(req, false);
      },
    );
  };

  private settle(req: ForwarderRequest, consumed: boolean): boolean {
    req.end();
    if (consumed) this.stats.consumed++;
    else this.stats.notConsumed++;
    return consumed;
  }
}
