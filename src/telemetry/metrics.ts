/**
 * The service's metrics. The counters already exist as plain numbers (the dispatcher's
 * Outcomes, the netstack's gVisor-named Stats, the counter registry), so they are observable
 * instruments read at collection time: nothing is added to the packet path. Only decision
 * durations are recorded as they happen (a histogram, see decision-histograms.ts).
 *
 * Label values are bounded: every label here takes its values from a fixed list in the code
 * (outcomes, causes, families, rejection kinds, session modes, the netstack's counter names, the
 * counter registry's dotted names), none from a client or a packet. The one label a client
 * chooses, the decision histogram's `session`, is bounded in decision-histograms.ts.
 */
import type { Meter, ObservableResult } from "@opentelemetry/api";
import type { Stats } from "../netstack/stats.js";
import { REJECTION_KINDS } from "../service/errors.js";
import {
  OUTCOME_ACTIONS,
  OUTCOME_CAUSES,
  type Outcomes,
  type PolicyAction,
} from "../service/outcomes.js";
import { CAUSE_LABEL } from "./request-spans.js";

/** What the metrics read: the service's counters and gauges and the netstack's counters. */
export interface MetricSources {
  outcomes: Outcomes;
  /** Requests the Forwarder's own bound refused (on-overload), by family. */
  forwarderOverflow(): { action: PolicyAction; ipv4: number; ipv6: number };
  /** Requests waiting for a verdict now. */
  inFlight(): number;
  /** Open sessions by mode. */
  sessions(): { decide: number; observe: number };
  stats: Stats;
  /**
   * Every counter and gauge by the dotted name GetStats and the stats dump use (the daemon's
   * counter registry): exported as icmpfwd_counter_total{counter} and icmpfwd_gauge{gauge}.
   */
  registry(): { counters: Record<string, number>; gauges: Record<string, number> };
}

/** Decision-time buckets (seconds): 100 µs to the 10 s deadline bound. */
export const DECISION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** gVisor's camelCase counter names as snake_case label values (echoRequest → echo_request). */
export function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** ICMP counters that are not a message type: they count drops (see netstackDrops). */
const ICMP_NOT_A_TYPE = new Set(["invalid", "unrecognized", "dropped", "rateLimited", "noRoute"]);

type Row = [attributes: Record<string, string>, value: number];

/** icmpfwd_netstack_packets_total rows: IP packets in and out, ICMP messages by type. */
export function netstackPackets(s: Stats): Row[] {
  const rows: Row[] = [];
  for (const [protocol, ip] of [
    ["ipv4", s.ipv4],
    ["ipv6", s.ipv6],
  ] as const) {
    rows.push([{ direction: "received", protocol, type: "all" }, ip.packetsReceived]);
    rows.push([{ direction: "received", protocol, type: "delivered" }, ip.packetsDelivered]);
    rows.push([{ direction: "sent", protocol, type: "all" }, ip.packetsSent]);
    rows.push([{ direction: "sent", protocol, type: "fragment" }, ip.fragmentsSent]);
  }
  for (const [protocol, icmp] of [
    ["icmpv4", s.icmp.v4],
    ["icmpv6", s.icmp.v6],
  ] as const) {
    for (const [direction, counters] of [
      ["received", icmp.packetsReceived],
      ["sent", icmp.packetsSent],
    ] as const) {
      for (const [k, v] of Object.entries(counters)) {
        if (!ICMP_NOT_A_TYPE.has(k)) rows.push([{ direction, protocol, type: snake(k) }, v]);
      }
    }
  }
  return rows;
}

/** icmpfwd_netstack_drops_total rows: every drop reason, both families summed. */
export function netstackDrops(s: Stats): Row[] {
  const both = (f: (ip: Stats["ipv4"]) => number): number => f(s.ipv4) + f(s.ipv6);
  const reasons: Record<string, number> = {
    unknown_l3_protocol: s.nic.unknownL3ProtocolRcvdPackets,
    link_write_error: s.nic.txErrors,
    malformed: both((ip) => ip.malformedPacketsReceived),
    invalid_destination: both((ip) => ip.invalidDestinationAddressesReceived),
    invalid_source: both((ip) => ip.invalidSourceAddressesReceived),
    unknown_protocol: both((ip) => ip.unknownProtocolRcvdPackets),
    unsupported_header: both((ip) => ip.unsupportedHeadersReceived),
    no_next_header: both((ip) => ip.noNextHeaderReceived),
    other_transport: both((ip) => ip.otherTransportPacketsReceived),
    reassembly_timeout: both((ip) => ip.reassemblyTimeouts),
    reassembly_eviction: both((ip) => ip.reassemblyEvictions),
    reassembly_overlap: both((ip) => ip.reassemblyOverlaps),
    prerouting_hook: both((ip) => ip.preroutingDropped),
    input_hook: both((ip) => ip.inputDropped),
    output_hook: both((ip) => ip.outputDropped),
    postrouting_hook: both((ip) => ip.postroutingDropped),
    too_big: both((ip) => ip.outgoingPacketTooBig),
    icmp_invalid: s.icmp.v4.packetsReceived.invalid + s.icmp.v6.packetsReceived.invalid,
    icmp_unrecognized: s.icmp.v6.packetsReceived.unrecognized,
    icmp_rate_limited: s.icmp.v4.packetsSent.rateLimited + s.icmp.v6.packetsSent.rateLimited,
    icmp_no_route: s.icmp.v4.packetsSent.noRoute + s.icmp.v6.packetsSent.noRoute,
    icmp_send_dropped: s.icmp.v4.packetsSent.dropped + s.icmp.v6.packetsSent.dropped,
  };
  return Object.entries(reasons).map(([reason, v]) => [{ reason }, v]);
}

/** Registers the observable instruments; the callbacks read `src` at each collection. */
export function registerServiceMetrics(meter: Meter, src: MetricSources): void {
  const requests = meter.createObservableCounter("icmpfwd_requests_total", {
    description: "Echo Requests by outcome (what was done), cause (why) and address family",
  });
  const rejections = meter.createObservableCounter("icmpfwd_rejections_total", {
    description: "Client messages refused with a Rejection, by reason",
  });
  const inflight = meter.createObservableGauge("icmpfwd_inflight", {
    description: "Echo Requests waiting for a verdict",
  });
  const sessions = meter.createObservableGauge("icmpfwd_sessions", {
    description: "Open Connect sessions by mode",
  });
  const packets = meter.createObservableCounter("icmpfwd_netstack_packets_total", {
    description: "Netstack packets by direction, protocol and (ICMP) message type",
  });
  const drops = meter.createObservableCounter("icmpfwd_netstack_drops_total", {
    description: "Packets the netstack dropped, by reason",
  });
  const counters = meter.createObservableCounter("icmpfwd_counter", {
    description: "Every counter, named as GetStats and the stats dump name it",
  });
  const gauges = meter.createObservableGauge("icmpfwd_gauge", {
    description: "Every gauge, named as GetStats and the stats dump name it",
  });
  // One registry read per collection serves both instruments.
  meter.addBatchObservableCallback(
    (r) => {
      const s = src.registry();
      for (const [name, v] of Object.entries(s.counters)) r.observe(counters, v, { counter: name });
      for (const [name, v] of Object.entries(s.gauges)) r.observe(gauges, v, { gauge: name });
    },
    [counters, gauges],
  );
  requests.addCallback((r: ObservableResult) => {
    const overflow = src.forwarderOverflow();
    for (const family of ["ipv4", "ipv6"] as const) {
      const byAction = src.outcomes.byFamily[family];
      for (const outcome of OUTCOME_ACTIONS)
        for (const cause of OUTCOME_CAUSES) {
          // The dispatcher never sees what the Forwarder's bound refused: counted there.
          const extra =
            cause === "forwarderOverflow" && outcome === overflow.action ? overflow[family] : 0;
          r.observe(byAction[outcome][cause] + extra, {
            outcome,
            cause: CAUSE_LABEL[cause],
            family,
          });
        }
    }
  });
  rejections.addCallback((r) => {
    for (const k of REJECTION_KINDS) r.observe(src.outcomes.rejections[k], { reason: snake(k) });
  });
  inflight.addCallback((r) => r.observe(src.inFlight()));
  sessions.addCallback((r) => {
    const s = src.sessions();
    r.observe(s.decide, { mode: "decide" });
    r.observe(s.observe, { mode: "observe" });
  });
  packets.addCallback((r) => {
    for (const [a, v] of netstackPackets(src.stats)) r.observe(v, a);
  });
  drops.addCallback((r) => {
    for (const [a, v] of netstackDrops(src.stats)) r.observe(v, a);
  });
}
