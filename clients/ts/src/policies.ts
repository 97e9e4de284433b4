/** The example policies the CLI runs; each is a handler and the session mode it needs. */

import { tokenBuckets } from "./buckets.js";
import { type Handler, syntheticReply } from "./index.js";
import { isMeasurementPing, RttMeter, type RttMeterOptions } from "./rtt.js";

export { tokenBuckets };

export interface PolicyOptions {
  /** every-nth: reply to every nth request (default 2). */
  n?: number;
  /** per-source-rate-limit: tokens per second per source (default 1). */
  rate?: number;
  /** per-source-rate-limit: the bucket size (default 5). */
  burst?: number;
  /**
   * proxy-latency: the delay before the synthetic reply (default 100 ms); with `measure`, the
   * fallback when the measurement fails.
   */
  delayMs?: number;
  /** proxy-latency: reply after the RTT this host's `ping` measures to the destination. */
  measure?: boolean | RttMeterOptions;
  /** proxy-latency with `measure`: use this meter (default: a new one from `measure`). */
  meter?: RttMeter;
  /** observe-log: where each request goes (default: one JSON line on stdout). */
  print?: (line: string) => void;
  now?: () => number;
}

export interface Policy {
  mode: "decide" | "observe";
  handler: Handler;
  /** Hello.payload_bytes the policy needs (proxy-latency --measure reads the loop marker). */
  payloadBytes?: number;
  meter?: RttMeter;
}

export const POLICY_NAMES = [
  "reply-all",
  "drop-all",
  "even-reply",
  "every-nth",
  "per-source-rate-limit",
  "proxy-latency",
  "observe-log",
] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export function policy(name: PolicyName, o: PolicyOptions = {}): Policy {
  switch (name) {
    case "reply-all":
      return { mode: "decide", handler: () => "reply" };
    case "drop-all":
      return { mode: "decide", handler: () => "consume" };
    case "even-reply":
      return { mode: "decide", handler: (r) => (r.sequence % 2 === 0 ? "reply" : "consume") };
    case "every-nth": {
      const n = Math.max(1, Math.floor(o.n ?? 2));
      let seen = 0;
      return { mode: "decide", handler: () => (++seen % n === 0 ? "reply" : "consume") };
    }
    case "per-source-rate-limit": {
      const b = tokenBuckets(o.rate ?? 1, o.burst ?? 5, o.now);
      return { mode: "decide", handler: (r) => (b.take(r.source) ? "reply" : "consume") };
    }
    case "proxy-latency": {
      const delayMs = o.delayMs ?? 100;
      if (!o.measure) return { mode: "decide", handler: (r) => syntheticReply(r, { delayMs }) };
      const now = o.now ?? Date.now;
      const meter = o.meter ?? new RttMeter(typeof o.measure === "object" ? o.measure : {});
      return {
        mode: "decide",
        payloadBytes: 64,
        meter,
        handler: (r) => {
          // Our own measurement ping, routed into icmpfwd: answer it, and never measure it.
          if (isMeasurementPing(r.payload)) {
            meter.looped(r.destination);
            return "reply";
          }
          // The reply goes out one RTT after the request arrived: right when a fresh measurement
          // ends, or a cached RTT later.
          const t0 = now();
          const delay = meter
            .measure(r.destination)
            .then((rtt) => Math.max(0, (rtt ?? delayMs) - (now() - t0)));
          return syntheticReply(r, { delayMs: delay });
        },
      };
    }
    case "observe-log": {
      const print = o.print ?? ((l: string) => process.stdout.write(`${l}\n`));
      return {
        mode: "observe",
        handler: (r) => {
          print(
            JSON.stringify({
              family: r.family,
              source: r.source,
              destination: r.destination,
              ident: r.ident,
              sequence: r.sequence,
              ttl: r.ttl,
              payloadLength: r.payloadLength,
              traceId: r.traceId,
            }),
          );
          return "fallthrough";
        },
      };
    }
  }
}
