/** The decision-latency percentiles (service/decision-latency.ts). */
import { describe, expect, it } from "vitest";
import { DecisionLatencies, percentile } from "../../../src/service/decision-latency.js";

describe("decision latency", () => {
  it("nearest-rank percentiles over the window only", () => {
    let now = 0;
    const l = new DecisionLatencies(null, () => now);
    for (let i = 1; i <= 100; i++) l.record("s", i);
    now = 20_000;
    l.record("s", 1000);
    expect(l.overall(10_000)).toEqual({ decisions: 1, p50: 1000, p99: 1000, max: 1000 });
    expect(l.overall(30_000)).toMatchObject({ decisions: 101, p50: 51, p99: 100, max: 1000 });
    expect(percentile(new Float64Array(0), 99)).toBe(0);
  });
});
