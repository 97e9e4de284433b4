/**
 * RequestSampler draws ids in bulk (a pool of 256 draws, one string of traceparents): across
 * refills every unsampled traceparent is well-formed, carries its own draw's trace id and a span
 * id of its own, and a sampled draw's root span gets that same trace id.
 */
import { describe, expect, it } from "vitest";
import { RequestSampler } from "../../../src/telemetry/request-sampling.js";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/;

describe("RequestSampler's pool of draws", () => {
  it("1,000 unsampled draws: each its own ids, words in the order drawn", () => {
    let n = 0;
    const s = new RequestSampler({ kind: "always_off" }, () => n++);
    const seen = new Set<string>();
    for (let d = 0; d < 1000; d++) {
      expect(s.draw()).toBe(false);
      const m = TRACEPARENT.exec(s.unsampledTraceparent());
      if (m === null) throw new Error("not a traceparent");
      const w = (k: number) => (6 * d + k).toString(16).padStart(8, "0");
      expect(m[1]).toBe(`${w(0)}${w(1)}${w(2)}${w(3)}`);
      expect(m[2]).toBe(`${w(4)}${w(5)}`);
      seen.add(m[1]);
    }
    expect(seen.size).toBe(1000);
  });

  it("a sampled draw's root span takes the drawn trace id, across a refill", () => {
    const s = new RequestSampler({ kind: "always_on" });
    for (let d = 0; d < 600; d++) {
      expect(s.draw()).toBe(true);
      const unsampledForm = TRACEPARENT.exec(s.unsampledTraceparent())?.[1];
      s.startingSampled(true);
      expect(s.generateTraceId()).toBe(unsampledForm);
      s.started();
    }
  });
});
