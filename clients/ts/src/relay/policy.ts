/**
 * The relay policy: consume each request for an --allow destination the service does not own,
 * send it on from this host, and answer with what came back — the Echo Reply after the real
 * round trip, a router's error from that router, or nothing within the budget. Anything else
 * falls through. Raw sockets when the process may open them (CAP_NET_RAW), else datagram ping
 * sockets (which see the routers' errors through their error queue).
 */
import type { Logger } from "../log.js";
import type { PolicyRequest } from "../request.js";
import type { Decision, Handler, SyntheticAnswer } from "../types.js";
import type { AllowList } from "./allow-list.js";
import { type Probe, Relay, type RelayOptions } from "./relay.js";

/** The events carry the whole payload of any ordinary ping. */
export const RELAY_PAYLOAD_BYTES = 65535;

/** What the relay adds to the CLI's summary line. */
export interface RelayCounts {
  relayed: number;
  replies: number;
  errors: number;
  silent: number;
  refused: number;
}

export interface RelayPolicyOptions {
  allow: AllowList;
  rate: number;
  burst: number;
  budgetMs: number;
  /** Datagram ping sockets even when raw ones could be opened. */
  unprivileged: boolean;
  onLog: Logger;
  /** Opens the relay (tests pass a fake addon through it). */
  open?: (o: RelayOptions) => Relay;
}

export interface RelayPolicy {
  handler: Handler;
  payloadBytes: number;
  counts: RelayCounts;
  close(): void;
}

/** The request's payload at its full length (zeros past what the event carried). */
export function fullPayload(req: PolicyRequest): Uint8Array {
  if (req.payload.length >= req.payloadLength) return req.payload;
  const p = new Uint8Array(req.payloadLength);
  p.set(req.payload);
  return p;
}

/** Opens the relay's sockets (throws when none opens, or the addon is missing). */
export function relayPolicy(o: RelayPolicyOptions): RelayPolicy {
  const open = o.open ?? ((r: RelayOptions) => new Relay(r));
  const options: RelayOptions = {
    allow: o.allow,
    rate: o.rate,
    burst: o.burst,
    budgetMs: o.budgetMs,
    raw: !o.unprivileged,
  };
  let relay: Relay;
  try {
    relay = open(options);
  } catch (e) {
    if (o.unprivileged || (e instanceof Error && e.name === "IcmpAddonMissing")) throw e;
    o.onLog(
      "warn",
      `no raw ICMP socket (${e instanceof Error ? e.message : String(e)}): relaying with datagram ping sockets, which see the routers' errors through their error queue`,
    );
    relay = open({ ...options, raw: false });
  }
  const counts: RelayCounts = { relayed: 0, replies: 0, errors: 0, silent: 0, refused: 0 };
  const answer = async (probe: Probe, fields: Record<string, unknown>) => {
    try {
      const a = await relay.send(probe);
      if (a.kind === "reply") {
        counts.replies++;
        return {};
      }
      if (a.kind === "error") {
        counts.errors++;
        return { error: { type: a.error, source: a.from } };
      }
    } catch (e) {
      o.onLog("warn", `relay: ${e instanceof Error ? e.message : String(e)}`, fields);
    }
    counts.silent++;
    return null;
  };
  const handler = (req: PolicyRequest): Decision => {
    // A destination the service owns is its own to answer: never relayed.
    if (!req.localAddressTemporary) return { action: "fallthrough" };
    const fields = { request_id: req.id, trace_id: req.traceId };
    const probe: Probe = {
      source: req.source,
      destination: req.destination,
      ttl: req.ttl,
      payload: fullPayload(req),
    };
    const refused = relay.check(probe);
    if (refused !== null) {
      counts.refused++;
      o.onLog("debug", `not relayed: ${refused}`, fields);
      return { action: "fallthrough" };
    }
    counts.relayed++;
    const awaitSynthetic: Promise<SyntheticAnswer | null> = answer(probe, fields);
    return { action: "consume", awaitSynthetic };
  };
  return { handler, payloadBytes: RELAY_PAYLOAD_BYTES, counts, close: () => relay.close() };
}

export function relaySummary(c: RelayCounts): string {
  return ` relayed=${c.relayed} relay_replies=${c.replies} relay_errors=${c.errors} relay_silent=${c.silent} relay_refused=${c.refused}`;
}
