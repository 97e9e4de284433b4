import { type Address, addressEquals, addressKey, isIPv4 } from "../address.js";
import {
  IPV4_PROTOCOL_NUMBER,
  IPV6_PROTOCOL_NUMBER,
  type NetworkProtocolNumber,
  type PacketBuffer,
} from "../buffer.js";
import { isTcpipError, type TcpipError, tcpipError } from "../errors.js";
import { ICMP_ECHO_HEADER_SIZE, type ICMPMessageView } from "../header/icmp-message.js";
import { ICMPV4_ECHO, ICMPV4_ECHO_REPLY, ICMPv4Header } from "../header/icmpv4.js";
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPv6Header } from "../header/icmpv6.js";
import { IPv4Header } from "../header/ipv4.js";
import { IPv6Header } from "../header/ipv6.js";
import type { ProtocolStack } from "../protocol.js";
import type { TransportEndpointID } from "../transport.js";

/** An Echo Reply received by a ping endpoint. */
export interface EchoReplyEvent {
  readonly remoteAddress: Address;
  readonly localAddress: Address;
  readonly ident: number;
  readonly sequence: number;
  readonly payload: Uint8Array;
  /** TTL / hop limit of the reply as received. */
  readonly ttl: number;
  /** Stack clock, ms. */
  readonly receivedAtMs: number;
}

export interface PingEndpointOptions {
  family: "ipv4" | "ipv6";
  /** Send through this NIC only (0: any). */
  nicId?: number;
  /** Bind to this local address (null: any; the route picks the source). */
  localAddress?: Address | null;
  /** Bind this ident (0 or absent: pick a free one). */
  ident?: number;
}

/**
 * An ICMP Echo socket of the netstack (gVisor's transport/icmp endpoint): sends Echo Requests
 * with its ident and receives the matching Echo Replies (demultiplexed by local address and
 * ident). It never answers Echo Requests itself; a request carrying its ident is taken by it,
 * the default handler is skipped, and the stack's built-in reply still runs.
 */
export class PingEndpoint {
  readonly ident: number;
  readonly netProto: NetworkProtocolNumber;
  /** Called for every matching Echo Reply. */
  onReply: ((event: EchoReplyEvent) => void) | null = null;
  private closed = false;

  constructor(
    private readonly stack: ProtocolStack,
    private readonly registry: PingRegistry,
    private readonly options: PingEndpointOptions,
    ident: number,
  ) {
    this.ident = ident;
    this.netProto = options.family === "ipv4" ? IPV4_PROTOCOL_NUMBER : IPV6_PROTOCOL_NUMBER;
  }

  get localAddress(): Address | null {
    return this.options.localAddress ?? null;
  }

  /** Sends one Echo Request; the sequence number is the caller's. */
  sendEcho(
    remote: Address,
    sequence: number,
    payload: Uint8Array = new Uint8Array(0),
  ): TcpipError | null {
    if (this.closed) return tcpipError("closedForSend", "ping endpoint is closed");
    const v4 = this.netProto === IPV4_PROTOCOL_NUMBER;
    if (isIPv4(remote) !== v4)
      return tcpipError("badAddress", "remote address family differs from the endpoint's");
    const route = this.stack.findRoute(
      this.options.nicId ?? 0,
      this.localAddress,
      remote,
      this.netProto,
    );
    if (isTcpipError(route)) return route;
    const msg = new Uint8Array(ICMP_ECHO_HEADER_SIZE + payload.length);
    const echo: ICMPMessageView = v4 ? new ICMPv4Header(msg) : new ICMPv6Header(msg);
    echo.type = v4 ? ICMPV4_ECHO : ICMPV6_ECHO_REQUEST;
    echo.ident = this.ident;
    echo.sequence = sequence;
    msg.set(payload, ICMP_ECHO_HEADER_SIZE);
    const err = route.writeICMP(msg, 0);
    const sent = v4 ? this.stack.stats.icmp.v4.packetsSent : this.stack.stats.icmp.v6.packetsSent;
    if (err !== null) {
      sent.dropped++;
      return err;
    }
    sent.echoRequest++;
    return null;
  }

  /** @internal A packet the demuxer matched to this endpoint. */
  deliver(pkt: PacketBuffer, id: TransportEndpointID): void {
    const v4 = this.netProto === IPV4_PROTOCOL_NUMBER;
    const msg = pkt.transportMessage();
    const echo: ICMPMessageView = v4 ? new ICMPv4Header(msg) : new ICMPv6Header(msg);
    // Echo Requests with our ident are taken (so the default handler is skipped) but not answered here.
    if (echo.type !== (v4 ? ICMPV4_ECHO_REPLY : ICMPV6_ECHO_REPLY) || this.onReply === null) return;
    const ttl = v4 ? new IPv4Header(pkt.data).ttl : new IPv6Header(pkt.data).hopLimit;
    // The id's addresses are already copies of their own (see TransportProtocolHandler).
    this.onReply({
      remoteAddress: id.remoteAddress,
      localAddress: id.localAddress,
      ident: id.localPort,
      sequence: echo.sequence,
      payload: echo.payload().slice(),
      ttl,
      receivedAtMs: pkt.receivedAtMs,
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.registry.remove(this);
  }
}

/** The ping endpoints of a stack, by protocol and ident. */
export class PingRegistry {
  private readonly byKey = new Map<string, PingEndpoint[]>();
  private nextIdent = 1 + Math.floor(Math.random() * 0xfffe);

  constructor(private readonly stack: ProtocolStack) {}

  open(options: PingEndpointOptions): PingEndpoint | TcpipError {
    const proto = options.family === "ipv4" ? IPV4_PROTOCOL_NUMBER : IPV6_PROTOCOL_NUMBER;
    const local = options.localAddress ?? null;
    if (local !== null && isIPv4(local) !== (proto === IPV4_PROTOCOL_NUMBER)) {
      return tcpipError("badAddress", "local address family differs from the endpoint's");
    }
    let ident = options.ident ?? 0;
    if (!Number.isInteger(ident) || ident < 0 || ident > 0xffff) {
      return tcpipError("invalidOptionValue", `ident must be 0–65535, got ${ident}`);
    }
    if (ident !== 0) {
      if (this.conflicts(proto, ident, local))
        return tcpipError("portInUse", `ident ${ident} is in use`);
    } else {
      for (let tries = 0; ; tries++) {
        if (tries > 0xffff) return tcpipError("portInUse", "no free ident");
        const candidate = this.nextIdent;
        this.nextIdent = (this.nextIdent % 0xffff) + 1;
        if (!this.conflicts(proto, candidate, local)) {
          ident = candidate;
          break;
        }
      }
    }
    const ep = new PingEndpoint(this.stack, this, { ...options, localAddress: local }, ident);
    const key = `${proto}:${ident}`;
    const list = this.byKey.get(key) ?? [];
    list.push(ep);
    this.byKey.set(key, list);
    return ep;
  }

  private conflicts(proto: number, ident: number, local: Address | null): boolean {
    const list = this.byKey.get(`${proto}:${ident}`);
    if (list === undefined) return false;
    return list.some(
      (ep) => ep.localAddress === null || local === null || addressEquals(ep.localAddress, local),
    );
  }

  /** The endpoint bound to this ident and (if bound) this local address. */
  match(proto: NetworkProtocolNumber, id: TransportEndpointID): PingEndpoint | null {
    const list = this.byKey.get(`${proto}:${id.localPort}`);
    if (list === undefined) return null;
    for (const ep of list) {
      const local = ep.localAddress;
      if (local === null || addressKey(local) === addressKey(id.localAddress)) return ep;
    }
    return null;
  }

  remove(ep: PingEndpoint): void {
    const key = `${ep.netProto}:${ep.ident}`;
    const list = this.byKey.get(key);
    if (list === undefined) return;
    const i = list.indexOf(ep);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byKey.delete(key);
  }

  get isEmpty(): boolean {
    return this.byKey.size === 0;
  }

  get size(): number {
    let n = 0;
    for (const l of this.byKey.values()) n += l.length;
    return n;
  }
}
