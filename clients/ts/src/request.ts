/** An Echo Request as a handler sees it: addresses as strings, times in milliseconds. */
import ipaddr from "ipaddr.js";
import { type EchoRequest, Family } from "./gen/icmpfwd/v1/forwarder.js";

export interface PolicyRequest {
  id: bigint;
  family: "ipv4" | "ipv6";
  nic: number;
  source: string;
  destination: string;
  ident: number;
  sequence: number;
  ttl: number;
  tos: number;
  localAddressTemporary: boolean;
  /** The first payload_bytes of the payload (Hello.payloadBytes; 0 by default). */
  payload: Uint8Array;
  payloadLength: number;
  /** Milliseconds since the epoch (undefined when the service did not say). */
  receivedAtMs: number | undefined;
  deadlineMs: number | undefined;
  /** How long the service waits for the verdict, in milliseconds. */
  budgetMs: number | undefined;
  traceparent: string;
  /** The trace id of the W3C traceparent, or null. */
  traceId: string | null;
}

/** The W3C traceparent's trace id, or null. */
export function traceIdOf(traceparent: string): string | null {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim());
  return m && m[1] !== "0".repeat(32) ? m[1] : null;
}

export function formatAddress(b: Uint8Array): string {
  // RFC 5952 text (as the service writes it); anything not 4 or 16 bytes is shown as hex.
  if (b.length !== 4 && b.length !== 16) return Buffer.from(b).toString("hex");
  const a = ipaddr.fromByteArray(Array.from(b));
  if (a instanceof ipaddr.IPv6 && a.isIPv4MappedAddress())
    return `::ffff:${a.toIPv4Address().toString()}`;
  return a.toString();
}

const msOf = (t: { seconds: bigint; nanos: number } | undefined): number | undefined =>
  t === undefined ? undefined : Number(t.seconds) * 1000 + t.nanos / 1e6;

export function toPolicyRequest(e: EchoRequest): PolicyRequest {
  return {
    id: e.requestId,
    family: e.family === Family.FAMILY_IPV6 ? "ipv6" : "ipv4",
    nic: e.nic,
    source: formatAddress(e.source),
    destination: formatAddress(e.destination),
    ident: e.ident,
    sequence: e.sequence,
    ttl: e.ttl,
    tos: e.tos,
    localAddressTemporary: e.localAddressTemporary,
    payload: e.payload,
    payloadLength: e.payloadLength,
    receivedAtMs: msOf(e.receivedAt),
    deadlineMs: msOf(e.deadline),
    budgetMs: msOf(e.budget),
    traceparent: e.traceparent,
    traceId: traceIdOf(e.traceparent),
  };
}
