/**
 * The head-sampling decision for Echo Request traces, made before any span exists: an unsampled
 * request then costs six random words and one small object (its traceparent, written into the
 * event from the words) instead of a non-recording span, its ids and contexts. The decision is
 * the configured sampler's for a root span, on the same trace id the span then gets:
 * RequestSampler is also the provider's id generator and sampler, so the sampled requests are
 * the ones the SDK would have sampled, and their spans skip a second decision. Every other span
 * (the gRPC calls') is decided by the configured sampler.
 */
import { randomFillSync } from "node:crypto";
import type { Attributes, Context, Link, SpanKind } from "@opentelemetry/api";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  type IdGenerator,
  ParentBasedSampler,
  type Sampler,
  SamplingDecision,
  type SamplingResult,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import type { SamplerSetting } from "./settings.js";
import { putHex, UnsampledTraceparent } from "./traceparent-bytes.js";

const TWO_32 = 0x1_0000_0000;

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/**
 * 32 random bits a call from xoshiro128** (Blackman and Vigna), seeded from the system's CSPRNG.
 * Trace and span ids must be unique and uniform, not secret (the SDK draws them with
 * Math.random). A word costs about what crypto.randomFillSync costs in bulk and a third of
 * Math.random, drawn one at a time: no pool of draws to refill and keep.
 */
export function seededRandom32(): () => number {
  const seed = new Uint32Array(4);
  do randomFillSync(seed);
  while ((seed[0] | seed[1] | seed[2] | seed[3]) === 0);
  return xoshiro128StarStar(seed);
}

/** The generator from a state of four 32-bit words, not all zero. */
export function xoshiro128StarStar(seed: ArrayLike<number>): () => number {
  let a = seed[0] | 0;
  let b = seed[1] | 0;
  let c = seed[2] | 0;
  let d = seed[3] | 0;
  return () => {
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r;
  };
}

/**
 * The root sampler's bound: a trace is sampled when the XOR of its id's four 32-bit words is
 * below it. TraceIdRatioBasedSampler's formula (ratio normalized as it does); always_on is every
 * word value, always_off none. parentbased_* samplers decide roots with their root sampler.
 */
export function rootBoundOf(s: SamplerSetting): number {
  switch (s.kind) {
    case "always_on":
    case "parentbased_always_on":
      return TWO_32;
    case "always_off":
    case "parentbased_always_off":
      return 0;
    case "traceidratio":
    case "parentbased_traceidratio": {
      // NaN counts as 0, as the SDK normalizes it.
      const r = Number.isNaN(s.ratio) ? 0 : Math.min(1, Math.max(0, s.ratio));
      return r === 1 ? TWO_32 : Math.floor(r * 0xffffffff);
    }
  }
}

/** The SDK sampler for the setting (the provider's; it decides spans other than requests'). */
export function sdkSamplerOf(s: SamplerSetting): Sampler {
  switch (s.kind) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(s.ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(s.ratio) });
  }
}

const TEMPLATE = `00-${"0".repeat(32)}-${"0".repeat(16)}-00`;
/** Offsets in TEMPLATE: the trace id's hex, the span id's hex. */
const TRACE_AT = 3;
const SPAN_AT = 36;

const SAMPLED: SamplingResult = Object.freeze({ decision: SamplingDecision.RECORD_AND_SAMPLED });

export class RequestSampler implements IdGenerator, Sampler {
  readonly bound: number;
  /** The configured sampler, for spans this did not decide. */
  private readonly configured: Sampler;
  // The last drawn trace id, as words (numbers: nothing allocated per draw).
  private w0 = 0;
  private w1 = 0;
  private w2 = 0;
  private w3 = 1;
  // The last drawn span id, as words.
  private s0 = 0;
  private s1 = 1;
  /** The next generateTraceId() returns the last draw (the sampled request's root span). */
  private preset = false;
  /** The next span started is a sampled request's: already decided. */
  private decided = false;
  // One buffer formats the sampled spans' ids: its latin1 slice is the only allocation per id.
  private readonly buf = Buffer.from(TEMPLATE, "latin1");

  /** @param random 32 random bits per call (tests give chosen ids). */
  constructor(
    sampler: SamplerSetting,
    private readonly random: () => number = seededRandom32(),
  ) {
    this.bound = rootBoundOf(sampler);
    this.configured = sdkSamplerOf(sampler);
  }

  /** Draws a new root trace id; true when the configured sampler samples it. */
  draw(): boolean {
    const random = this.random;
    this.w0 = random();
    this.w1 = random();
    this.w2 = random();
    this.w3 = random();
    // All-zero ids are invalid: the SDK sets the last byte to 1.
    if ((this.w0 | this.w1 | this.w2 | this.w3) === 0) this.w3 = 1;
    return (this.w0 ^ this.w1 ^ this.w2 ^ this.w3) >>> 0 < this.bound;
  }

  /** The last draw's trace with a span id of its own and flags 00 (not sampled). */
  unsampledTrace(): UnsampledTraceparent {
    this.drawSpanId();
    return new UnsampledTraceparent(this.w0, this.w1, this.w2, this.w3, this.s0, this.s1);
  }

  /** Draws a span id into s0, s1 (the all-zero id is invalid, as for trace ids). */
  private drawSpanId(): void {
    this.s0 = this.random();
    this.s1 = this.random();
    if ((this.s0 | this.s1) === 0) this.s1 = 1;
  }

  /**
   * The span started next belongs to the sampled request just drawn: its root (`root`: it takes
   * the drawn trace id) or its decide child (same trace, so the configured sampler samples it).
   */
  startingSampled(root: boolean): void {
    this.preset = root;
    this.decided = true;
  }

  /** After that span started: nothing preset is left for another span. */
  started(): void {
    this.preset = false;
    this.decided = false;
  }

  shouldSample(
    context: Context,
    traceId: string,
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    if (this.decided) {
      this.decided = false;
      return SAMPLED;
    }
    return this.configured.shouldSample(context, traceId, name, kind, attributes, links);
  }

  toString(): string {
    return `RequestSampler{${this.configured.toString()}}`;
  }

  generateTraceId(): string {
    if (this.preset) this.preset = false;
    else this.draw();
    this.putTraceId();
    return this.buf.toString("latin1", TRACE_AT, TRACE_AT + 32);
  }

  generateSpanId(): string {
    this.putSpanId();
    return this.buf.toString("latin1", SPAN_AT, SPAN_AT + 16);
  }

  private putTraceId(): void {
    const b = this.buf;
    let i = putHex(b, TRACE_AT, this.w0);
    i = putHex(b, i, this.w1);
    i = putHex(b, i, this.w2);
    putHex(b, i, this.w3);
  }

  private putSpanId(): void {
    this.drawSpanId();
    putHex(this.buf, putHex(this.buf, SPAN_AT, this.s0), this.s1);
  }
}
