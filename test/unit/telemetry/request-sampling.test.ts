/**
 * RequestSampler decides before any span exists; its choice must be the SDK sampler's for the
 * same root trace id, so the sampled requests are the ones the SDK would have sampled.
 */
import { ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import { SamplingDecision, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import {
  RequestSampler,
  rootBoundOf,
  sdkSamplerOf,
  seededRandom32,
} from "../../../src/telemetry/request-sampling.js";
import type { SamplerSetting } from "../../../src/telemetry/settings.js";
import { traceparentText } from "../../helpers/traceparent-writer.js";

/** Draws once from `s` and returns its decision and the trace id it drew. */
function drawOnce(s: RequestSampler): { sampled: boolean; traceId: string } {
  const sampled = s.draw();
  s.startingSampled(true);
  return { sampled, traceId: s.generateTraceId() };
}

/** Random words, then words whose XOR sits on either side of `bound`. */
function wordsAround(bound: number): () => number {
  const random32 = seededRandom32();
  const queue: number[] = [];
  for (const x of [bound - 1, bound, bound + 1, 0, 0xffffffff])
    if (x >= 0 && x <= 0xffffffff) {
      const a = random32();
      const b = random32();
      const c = random32();
      queue.push(a, b, c, (a ^ b ^ c ^ x) >>> 0);
    }
  return () => queue.shift() ?? random32();
}

const sdkSampled = (setting: SamplerSetting, traceId: string): boolean =>
  sdkSamplerOf(setting).shouldSample(
    ROOT_CONTEXT,
    traceId,
    "icmpfwd.echo_request",
    SpanKind.SERVER,
    {},
    [],
  ).decision === SamplingDecision.RECORD_AND_SAMPLED;

describe("RequestSampler", () => {
  const ratios = [0, 1e-9, 0.001, 0.01, 0.1, 0.25, 0.5, 0.9, 0.999999, 1, 1.5, -1];
  for (const ratio of ratios)
    it(`decides as TraceIdRatioBasedSampler(${ratio}) for the same trace ids`, () => {
      const sdk = new TraceIdRatioBasedSampler(ratio);
      for (const kind of ["traceidratio", "parentbased_traceidratio"] as const) {
        const setting = { kind, ratio };
        const s = new RequestSampler(setting, wordsAround(rootBoundOf(setting)));
        let sampled = 0;
        for (let i = 0; i < 5000; i++) {
          const d = drawOnce(s);
          expect(d.traceId).toMatch(/^[0-9a-f]{32}$/);
          const want =
            sdk.shouldSample(ROOT_CONTEXT, d.traceId).decision ===
            SamplingDecision.RECORD_AND_SAMPLED;
          expect(d.sampled, d.traceId).toBe(want);
          expect(sdkSampled(setting, d.traceId)).toBe(want);
          if (d.sampled) sampled++;
        }
        const r = Math.min(1, Math.max(0, ratio));
        if (r > 0.01 && r < 1) expect(Math.abs(sampled / 5000 - r)).toBeLessThan(0.03);
      }
    });

  it("always_on / always_off and their parent-based forms decide roots as their root sampler", () => {
    for (const [kind, want] of [
      ["always_on", true],
      ["parentbased_always_on", true],
      ["always_off", false],
      ["parentbased_always_off", false],
    ] as const) {
      const setting = { kind };
      const s = new RequestSampler(setting);
      for (let i = 0; i < 1000; i++) {
        const d = drawOnce(s);
        expect(d.sampled).toBe(want);
        expect(sdkSampled(setting, d.traceId)).toBe(want);
      }
    }
  });

  it("never draws the invalid all-zero trace id or span id", () => {
    const s = new RequestSampler({ kind: "always_off" }, () => 0);
    expect(s.draw()).toBe(false);
    expect(traceparentText(s.unsampledTrace())).toBe(`00-${"0".repeat(31)}1-${"0".repeat(15)}1-00`);
  });

  it("an unsampled traceparent carries the drawn trace id, a fresh span id and flags 00", () => {
    const words = [0x01234567, 0x89abcdef, 0xdeadbeef, 0x00000042, 0xcafef00d, 0x0badc0de];
    const s = new RequestSampler({ kind: "always_off" }, () => words.shift() ?? 7);
    expect(s.draw()).toBe(false);
    expect(traceparentText(s.unsampledTrace())).toBe(
      "00-0123456789abcdefdeadbeef00000042-cafef00d0badc0de-00",
    );
  });

  it("as the provider's sampler: a request span it started is sampled once, other spans as configured", () => {
    const s = new RequestSampler({ kind: "parentbased_always_off" });
    const ask = () =>
      s.shouldSample(
        ROOT_CONTEXT,
        "0af7651916cd43dd8448eb211c80319c",
        "x",
        SpanKind.INTERNAL,
        {},
        [],
      ).decision;
    s.startingSampled(false);
    expect(ask()).toBe(SamplingDecision.RECORD_AND_SAMPLED);
    expect(ask()).toBe(SamplingDecision.NOT_RECORD);
    s.startingSampled(true);
    s.started();
    expect(ask()).toBe(SamplingDecision.NOT_RECORD);
    expect(String(s)).toContain("AlwaysOff");
  });

  it("gives random ids to spans other than the request's root (no preset)", () => {
    const s = new RequestSampler({ kind: "always_on" });
    s.draw();
    s.startingSampled(true);
    const preset = s.generateTraceId();
    const next = s.generateTraceId();
    expect(next).not.toBe(preset);
    expect(next).toMatch(/^[0-9a-f]{32}$/);
    expect(s.generateSpanId()).toMatch(/^[0-9a-f]{16}$/);
    s.startingSampled(true);
    s.started();
    expect(s.generateTraceId()).not.toBe(next);
  });
});
