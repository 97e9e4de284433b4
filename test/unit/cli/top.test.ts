/** `icmpfwd top`'s model and drop reasons (cli/top.ts). */
import { describe, expect, it } from "vitest";
import {
  DROP_COUNTERS,
  renderLine,
  sparkline,
  TopModel,
  type TopSample,
} from "../../../src/cli/top.js";
import { flattenStats } from "../../../src/netstack/stats.js";
import { netstackDrops } from "../../../src/telemetry/metrics.js";
import { testStack } from "../../helpers/stack.js";

describe("icmpfwd top", () => {
  it("its drop reasons and counters are exactly the metric's", () => {
    const { stack } = testStack();
    // Give every counter a distinct value, then compare sums.
    let i = 1;
    const walk = (o: Record<string, unknown>): void => {
      for (const [k, v] of Object.entries(o)) {
        if (typeof v === "number") o[k] = i++;
        else if (typeof v === "object" && v !== null) walk(v as Record<string, unknown>);
      }
    };
    walk(stack.stats as unknown as Record<string, unknown>);
    const flat = flattenStats(stack.stats);
    const fromTop = Object.fromEntries(
      Object.entries(DROP_COUNTERS).map(([r, names]) => [
        r,
        names.reduce((n, k) => n + (flat[k] as number), 0),
      ]),
    );
    const fromMetric = Object.fromEntries(
      netstackDrops(stack.stats).map(([a, v]) => [a.reason, v]),
    );
    expect(fromTop).toEqual(fromMetric);
  });

  it("rates are deltas over the snapshot interval; the sparkline scales to the largest", () => {
    const m = new TopModel();
    const sample = (atMs: number, requests: number): TopSample => ({
      atMs,
      counters: { "service.requests": requests, "service.outcomes.reply.verdict": requests },
      gauges: { "service.inFlight": 0 },
      sessions: [],
      decisions: null,
    });
    m.push(sample(0, 0));
    const v = m.push(sample(2000, 50));
    expect(v.requests).toEqual({ total: 50, rate: 25 });
    expect(v.outcomes).toEqual([
      { action: "reply", cause: "verdict", value: { total: 50, rate: 25 } },
    ]);
    expect(renderLine(v)).toBe(
      "1970-01-01T00:00:02.000Z requests=50 rate=25.0/s inFlight=0 p50=0.00ms p99=0.00ms sessions=0+0 reply.verdict=50",
    );
    expect(sparkline([0, 1, 2, 4, 8], 5)).toBe("▁▁▂▄█");
  });
});
