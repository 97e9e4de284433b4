/**
 * What the conformance tests need to know about each address family, so one test body covers
 * IPv4 and IPv6 (`describe.each(BY_FAMILY)`), plus a few small helpers shared by the files here.
 */
import { expect } from "vitest";
import { formatAddress } from "../../src/netstack/address.js";
import { ICMPv4Header } from "../../src/netstack/header/icmpv4.js";
import { ICMPv6Header } from "../../src/netstack/header/icmpv6.js";
import { IPv4Header } from "../../src/netstack/header/ipv4.js";
import { IPV6_MIN_SIZE, IPv6Header } from "../../src/netstack/header/ipv6.js";
import {
  Forwarder,
  type ForwarderHandler,
  type ForwarderOptions,
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  type Stack,
  type StackOptions,
} from "../../src/netstack/index.js";
import { v4Echo, v6Echo } from "../helpers/packets.js";
import { NIC_ID, type TestStack } from "../helpers/stack.js";

/** The fields of an ICMP message to inject, in family-neutral names. */
export interface EchoOptions {
  src?: string;
  dst?: string;
  type?: number;
  code?: number;
  ident?: number;
  sequence?: number;
  payload?: Uint8Array;
  /** IPv4 TTL / IPv6 hop limit. */
  ttl?: number;
  /** IPv4 TOS / IPv6 traffic class. */
  tos?: number;
}

/** One packet the stack wrote, parsed. */
export interface Wire {
  bytes: Uint8Array;
  src: string;
  dst: string;
  /** IPv4 TTL / IPv6 hop limit. */
  ttl: number;
  /** IPv4 TOS / IPv6 traffic class. */
  tos: number;
  type: number;
  code: number;
  ident: number;
  sequence: number;
  payload: number[];
  /** IPv4: header and ICMP checksums; IPv6: the ICMPv6 checksum over the pseudo-header. */
  checksumsValid: boolean;
}

export interface Family {
  name: "IPv4" | "IPv6";
  family: "ipv4" | "ipv6";
  /** The kernel side of the link: the source of injected requests. */
  remote: string;
  /** The NIC's primary address in the remote's subnet. */
  local: string;
  /** An address in no subnet of the NIC: accepted only on a promiscuous NIC (temporary). */
  temporary: string;
  echoRequest: number;
  echoReply: number;
  dstUnreachable: number;
  /** DESIGN.md §3: only IPv4 suppresses the automatic reply for a temporary address. */
  suppressesTemporary: boolean;
  /** Stack options that put Echo Replies under the rate limiter with an empty bucket. */
  rateLimitEchoReplies: StackOptions;
  /** A packet from `remote` to `local` (an Echo Request unless `type` says otherwise). */
  echo(o?: EchoOptions): Uint8Array;
  parse(bytes: Uint8Array): Wire;
  sent(stack: Stack): {
    echoRequest: number;
    echoReply: number;
    dropped: number;
    rateLimited: number;
  };
  received(stack: Stack): { echoRequest: number; echoReply: number; invalid: number };
}

export const IPV4: Family = {
  name: "IPv4",
  family: "ipv4",
  remote: "198.18.0.1",
  local: "198.18.0.2",
  temporary: "198.18.200.7",
  echoRequest: 8,
  echoReply: 0,
  dstUnreachable: 3,
  suppressesTemporary: true,
  rateLimitEchoReplies: { icmpv4RateLimitedTypes: [0], icmpBurst: 0 },
  echo: (o = {}) => v4Echo(o),
  parse(bytes) {
    const ip = new IPv4Header(bytes);
    const icmp = new ICMPv4Header(bytes, ip.ihl);
    return {
      bytes,
      src: formatAddress(ip.sourceAddress),
      dst: formatAddress(ip.destinationAddress),
      ttl: ip.ttl,
      tos: ip.tos,
      type: icmp.type,
      code: icmp.code,
      ident: icmp.ident,
      sequence: icmp.sequence,
      payload: [...icmp.payload()],
      checksumsValid: ip.isChecksumValid() && icmp.isChecksumValid(),
    };
  },
  sent: (s) => s.stats.icmp.v4.packetsSent,
  received: (s) => s.stats.icmp.v4.packetsReceived,
};

export const IPV6: Family = {
  name: "IPv6",
  family: "ipv6",
  remote: "fd00:1::1",
  local: "fd00:1::2",
  temporary: "fd00:2::7",
  echoRequest: 128,
  echoReply: 129,
  dstUnreachable: 1,
  suppressesTemporary: false,
  rateLimitEchoReplies: { icmpv6RateLimitedTypes: [129], icmpBurst: 0 },
  echo: ({ ttl, tos, ...o } = {}) => v6Echo({ ...o, hopLimit: ttl, trafficClass: tos }),
  parse(bytes) {
    const ip = new IPv6Header(bytes);
    const icmp = new ICMPv6Header(bytes, IPV6_MIN_SIZE);
    return {
      bytes,
      src: formatAddress(ip.sourceAddress),
      dst: formatAddress(ip.destinationAddress),
      ttl: ip.hopLimit,
      tos: ip.trafficClass,
      type: icmp.type,
      code: icmp.code,
      ident: icmp.ident,
      sequence: icmp.sequence,
      payload: [...icmp.payload()],
      checksumsValid: icmp.isChecksumValid(ip.sourceAddress, ip.destinationAddress),
    };
  },
  sent: (s) => s.stats.icmp.v6.packetsSent,
  received: (s) => s.stats.icmp.v6.packetsReceived,
};

export const FAMILIES: readonly Family[] = [IPV4, IPV6];

/** For `describe.each(BY_FAMILY)("… %s", (_, f) => …)`: titles read "… IPv4", "… IPv6". */
export const BY_FAMILY: readonly (readonly [string, Family])[] = FAMILIES.map((f) => [f.name, f]);

/** Installs one Forwarder for ICMPv4 and ICMPv6, as the seed's dual-stack embedder does. */
export function install(
  t: TestStack,
  handler: ForwarderHandler,
  options?: ForwarderOptions,
): Forwarder {
  const f = new Forwarder(handler, options);
  t.stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
  t.stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, f.handlePacket);
  return f;
}

/** Everything the stack wrote since the last call, parsed. */
export function wire(t: TestStack, f: Family): Wire[] {
  return t.link.drain().map((b) => f.parse(b));
}

/** Asserts the stack wrote exactly one Echo Reply since the last call and returns it. */
export function oneReply(t: TestStack, f: Family): Wire {
  const out = wire(t, f);
  expect(out.length).toBe(1);
  expect(out[0].type).toBe(f.echoReply);
  expect(out[0].checksumsValid).toBe(true);
  return out[0];
}

/** tun2socks-style: accept any destination (temporary addresses) and send from any address. */
export function promiscuous(t: TestStack, spoofing = true): void {
  expect(t.stack.setPromiscuousMode(NIC_ID, true)).toBeNull();
  expect(t.stack.setSpoofing(NIC_ID, spoofing)).toBeNull();
}

/** Lets every pending promise callback and the next macrotask run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A promise with its resolve / reject exposed. */
export function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
