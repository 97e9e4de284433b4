/**
 * The head-sampling decision for Echo Request traces, made before any span exists: an unsampled
 * request then costs a draw from a pool made in bulk and a substring (its traceparent) instead
 * of a non-recording span, its ids and contexts. The decision is the configured sampler's for a root span, on the
 * same trace id the span then gets: RequestSampler is also the provider's id generator and
 * sampler, so the sampled requests are the ones the SDK would have sampled, and their spans skip
 * a second decision. Every other span (gRPC instrumentation) is decided by the configured sampler.
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

const TWO_32 = 0x1_0000_0000;

/** 32 random bits, as the SDK's RandomIdGenerator draws them. */
export const random32 = (): number => (Math.random() * TWO_32) >>> 0;

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

const HEX = Buffer.from("0123456789abcdef", "latin1");
/** A byte's two lowercase hex digits (ASCII): one lookup per byte instead of one per digit. */
const HIGH_DIGIT = Uint8Array.from({ length: 256 }, (_, v) => HEX[v >> 4]);
const LOW_DIGIT = Uint8Array.from({ length: 256 }, (_, v) => HEX[v & 15]);
const TEMPLATE = `00-${"0".repeat(32)}-${"0".repeat(16)}-00`;
/** Offsets in TEMPLATE: the trace id's hex, the span id's hex. */
const TRACE_AT = 3;
const SPAN_AT = 36;

/** Writes `w` as 8 lowercase hex digits at `i`. */
function putHex(b: Buffer, i: number, w: number): number {
  let v = w >>> 24;
  b[i] = HIGH_DIGIT[v];
  b[i + 1] = LOW_DIGIT[v];
  v = (w >>> 16) & 0xff;
  b[i + 2] = HIGH_DIGIT[v];
  b[i + 3] = LOW_DIGIT[v];
  v = (w >>> 8) & 0xff;
  b[i + 4] = HIGH_DIGIT[v];
  b[i + 5] = LOW_DIGIT[v];
  v = w & 0xff;
  b[i + 6] = HIGH_DIGIT[v];
  b[i + 7] = LOW_DIGIT[v];
  return i + 8;
}

const SAMPLED: SamplingResult = Object.freeze({ decision: SamplingDecision.RECORD_AND_SAMPLED });

/** Draws made at once: 256 × 55 characters of traceparents (a 14 KB string). */
const POOL_SLOTS = 256;
/** Random words per draw: the trace id's four, the unsampled traceparent's span id's two. */
const WORDS = 6;

/**
 * Ids drawn in bulk: POOL_SLOTS draws at a time, each formatted at once into its unsampled
 * traceparent (flags 00), all of them one string. An unsampled request's traceparent is then a
 * substring of it (V8 copies no characters) rather than a string formatted and allocated per
 * request. A pending request's substring keeps the 14 KB string alive, at most
 * pending ÷ POOL_SLOTS of them.
 */
class DrawPool {
  readonly words = new Uint32Array(POOL_SLOTS * WORDS);
  private readonly text = Buffer.from(TEMPLATE.repeat(POOL_SLOTS), "latin1");
  private traceparents = "";
  private next = POOL_SLOTS;

  /** `random` null: the words come from crypto.randomFillSync, all at once (5× faster). */
  constructor(private readonly random: (() => number) | null) {}

  /** The next draw: its index into `words` (× WORDS) and traceparent(). */
  take(): number {
    if (this.next === POOL_SLOTS) this.refill();
    return this.next++;
  }

  traceparent(slot: number): string {
    const at = slot * TEMPLATE.length;
    return this.traceparents.substring(at, at + TEMPLATE.length);
  }

  private refill(): void {
    const w = this.words;
    const b = this.text;
    const random = this.random;
    if (random === null) randomFillSync(w);
    else for (let j = 0; j < w.length; j++) w[j] = random();
    for (let k = 0, o = 0, at = 0; k < POOL_SLOTS; k++, o += WORDS, at += TEMPLATE.length) {
      // All-zero ids are invalid: the SDK sets the last byte to 1.
      if ((w[o] | w[o + 1] | w[o + 2] | w[o + 3]) === 0) w[o + 3] = 1;
      if ((w[o + 4] | w[o + 5]) === 0) w[o + 5] = 1;
      let i = putHex(b, at + TRACE_AT, w[o]);
      i = putHex(b, i, w[o + 1]);
      i = putHex(b, i, w[o + 2]);
      putHex(b, i, w[o + 3]);
      putHex(b, putHex(b, at + SPAN_AT, w[o + 4]), w[o + 5]);
    }
    this.traceparents = b.toString("latin1");
    this.next = 0;
  }
}

export class RequestSampler implements IdGenerator, Sampler {
  readonly bound: number;
  /** The configured sampler, for spans this did not decide. */
  private readonly configured: Sampler;
  // The last drawn trace id, as words (numbers: nothing allocated per draw).
  private w0 = 0;
  private w1 = 0;
  private w2 = 0;
  private w3 = 1;
  /** The next generateTraceId() returns the last draw (the sampled request's root span). */
  private preset = false;
  /** The next span started is a sampled request's: already decided. */
  private decided = false;
  private readonly pool: DrawPool;
  /** The last draw's slot in the pool. */
  private slot = 0;
  // One buffer formats the sampled spans' ids: its latin1 slice is the only allocation per id.
  private readonly buf = Buffer.from(TEMPLATE, "latin1");

  /** @param random 32 random bits per call (tests give chosen ids). */
  constructor(
    sampler: SamplerSetting,
    private readonly random: () => number = random32,
  ) {
    this.bound = rootBoundOf(sampler);
    this.configured = sdkSamplerOf(sampler);
    this.pool = new DrawPool(random === random32 ? null : random);
  }

  /** Draws a new root trace id; true when the configured sampler samples it. */
  draw(): boolean {
    const k = this.pool.take();
    const w = this.pool.words;
    const o = k * WORDS;
    this.slot = k;
    this.w0 = w[o];
    this.w1 = w[o + 1];
    this.w2 = w[o + 2];
    this.w3 = w[o + 3];
    return (this.w0 ^ this.w1 ^ this.w2 ^ this.w3) >>> 0 < this.bound;
  }

  /** The last draw's traceparent with a span id of its own and flags 00 (not sampled). */
  unsampledTraceparent(): string {
    return this.pool.traceparent(this.slot);
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
    const hi = this.random();
    let lo = this.random();
    if ((hi | lo) === 0) lo = 1;
    putHex(this.buf, putHex(this.buf, SPAN_AT, hi), lo);
  }
}
