/**
 * Traceparents written as bytes straight into an event (W3C Trace Context, version 00:
 * `00-<trace id>-<span id>-<flags>`, 55 ASCII characters). Every traced request's event carries
 * one; writing it byte by byte from the ids costs no string and no native call per request.
 */
import type { SpanContext } from "@opentelemetry/api";
import type { UnsampledTrace } from "../service/request-telemetry.js";

const HEX = Buffer.from("0123456789abcdef", "latin1");
/** A byte's two lowercase hex digits (ASCII): one lookup per byte instead of one per digit. */
const HIGH_DIGIT = Uint8Array.from({ length: 256 }, (_, v) => HEX[v >> 4]);
const LOW_DIGIT = Uint8Array.from({ length: 256 }, (_, v) => HEX[v & 15]);
const DASH = 0x2d;
const ZERO = 0x30;

/** Writes `w` as 8 lowercase hex digits at `i`; returns the offset after them. */
export function putHex(b: Uint8Array, i: number, w: number): number {
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

/** Writes the ASCII string `s` at `i`; returns the offset after it. */
function putAscii(b: Uint8Array, i: number, s: string): number {
  for (let k = 0; k < s.length; k++) b[i + k] = s.charCodeAt(k);
  return i + s.length;
}

/** `00-` at `i`: the version and its dash. */
function putVersion(b: Uint8Array, i: number): number {
  b[i] = ZERO;
  b[i + 1] = ZERO;
  b[i + 2] = DASH;
  return i + 3;
}

/** The traceparent of a span context (a sampled request's span): its ids and its flags. */
export function writeTraceparentOf(sc: SpanContext, b: Uint8Array, at: number): number {
  let i = putAscii(b, putVersion(b, at), sc.traceId);
  b[i++] = DASH;
  i = putAscii(b, i, sc.spanId);
  b[i++] = DASH;
  const flags = sc.traceFlags & 0xff;
  b[i] = HIGH_DIGIT[flags];
  b[i + 1] = LOW_DIGIT[flags];
  return i + 2;
}

/**
 * An unsampled request's trace: the trace id drawn for the sampling decision and a span id of
 * its own, as words (numbers, formatted only into the event), flags 00.
 */
export class UnsampledTraceparent implements UnsampledTrace {
  readonly sampled = false;

  constructor(
    private readonly t0: number,
    private readonly t1: number,
    private readonly t2: number,
    private readonly t3: number,
    private readonly s0: number,
    private readonly s1: number,
  ) {}

  writeTraceparent(b: Uint8Array, at: number): number {
    let i = putVersion(b, at);
    i = putHex(b, putHex(b, putHex(b, putHex(b, i, this.t0), this.t1), this.t2), this.t3);
    b[i++] = DASH;
    i = putHex(b, putHex(b, i, this.s0), this.s1);
    b[i] = DASH;
    b[i + 1] = ZERO;
    b[i + 2] = ZERO;
    return i + 3;
  }
}
