/** SampleRing (service/decision-latency.ts): grows with its samples, then keeps the last ones. */
import { describe, expect, it } from "vitest";
import { SampleRing } from "../../../src/service/decision-latency.js";

describe("SampleRing", () => {
  it("keeps every sample while it grows, then exactly the last `capacity`", () => {
    const r = new SampleRing(300);
    for (let i = 0; i < 200; i++) r.add(i, i);
    // Grown from 64 to 128 to 256 without losing one.
    expect([...r.since(0)]).toEqual(Array.from({ length: 200 }, (_, i) => i));
    for (let i = 200; i < 1000; i++) r.add(i, i);
    expect([...r.since(0)]).toEqual(Array.from({ length: 300 }, (_, i) => 700 + i));
    expect([...r.since(990)]).toEqual([990, 991, 992, 993, 994, 995, 996, 997, 998, 999]);
  });

  it("a ring smaller than its first room holds its capacity only", () => {
    const r = new SampleRing(5);
    for (let i = 0; i < 12; i++) r.add(i, 100 - i);
    expect([...r.since(0)]).toEqual([89, 90, 91, 92, 93]);
  });
});
