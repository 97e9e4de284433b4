/**
 * An unsampled request's trace is six random words written into its event as a traceparent:
 * each its own ids in the order drawn, its draw's trace id (the one a sampled draw's root span
 * would take), flags 00; the words come from xoshiro128**, seeded from the system.
 */
import { describe, expect, it } from "vitest";
import {
  RequestSampler,
  seededRandom32,
  xoshiro128StarStar,
} from "../../../src/telemetry/request-sampling.js";
import { traceparentText } from "../../helpers/traceparent-writer.js";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/;
const hex = (w: number) => w.toString(16).padStart(8, "0");

describe("unsampled traces", () => {
  it("1,000 unsampled draws: each its own ids, words in the order drawn", () => {
    let n = 0;
    const s = new RequestSampler({ kind: "always_off" }, () => n++);
    const seen = new Set<string>();
    for (let d = 0; d < 1000; d++) {
      expect(s.draw()).toBe(false);
      const m = TRACEPARENT.exec(traceparentText(s.unsampledTrace()));
      if (m === null) throw new Error("not a traceparent");
      const w = (k: number) => hex(6 * d + k);
      expect(m[1]).toBe(`${w(0)}${w(1)}${w(2)}${w(3)}`);
      expect(m[2]).toBe(`${w(4)}${w(5)}`);
      seen.add(m[1]);
    }
    expect(seen.size).toBe(1000);
  });

  it("a sampled draw's root span takes the drawn trace id", () => {
    const drawn: number[] = [];
    const random = seededRandom32();
    const s = new RequestSampler({ kind: "always_on" }, () => {
      const w = random();
      drawn.push(w);
      return w;
    });
    for (let d = 0; d < 600; d++) {
      drawn.length = 0;
      expect(s.draw()).toBe(true);
      const words = drawn.slice(0, 4);
      s.startingSampled(true);
      expect(s.generateTraceId()).toBe(words.map(hex).join(""));
      s.started();
    }
  });

  it("draws xoshiro128**'s words (the reference implementation's output)", () => {
    const r = xoshiro128StarStar([1, 2, 3, 4]);
    expect(Array.from({ length: 8 }, r)).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849,
    ]);
    const r2 = xoshiro128StarStar([0xdeadbeef, 0x01234567, 0x89abcdef, 0xffffffff]);
    for (let i = 0; i < 1000; i++) r2();
    expect(r2()).toBe(3331476404);
  });

  it("seeds each generator from the system: two draw different words", () => {
    const a = seededRandom32();
    const b = seededRandom32();
    const wa = Array.from({ length: 4 }, a);
    const wb = Array.from({ length: 4 }, b);
    expect(wa).not.toEqual(wb);
    for (const w of [...wa, ...wb]) expect(w >>> 0).toBe(w);
  });
});
