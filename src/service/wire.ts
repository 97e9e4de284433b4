/**
 * How the service puts messages on the wire, on its hot path without the generated code's
 * objects: each Echo Request event is encoded once, straight into its session's batch buffer,
 * framed as one `EchoRequestBatch.requests` entry (EventBatch); verdict batches are read
 * straight into typed arrays (Verdicts). Everything else goes through the generated code.
 * Client messages that do not decode become a value, not an exception, so the session answers
 * them with a Rejection and the stream stays up. The field numbers below are those of
 * proto/icmpfwd/v1/forwarder.proto; test/integration/service/wire.test.ts checks both
 * directions against the generated code.
 */
import type { Duration } from "../gen/google/protobuf/duration.js";
import type { Timestamp } from "../gen/google/protobuf/timestamp.js";
import {
  ClientMessage,
  EchoForwarderService,
  ServerMessage,
  type Verdict,
} from "../gen/icmpfwd/v1/forwarder.js";
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import { type StartedTrace, TRACEPARENT_LENGTH } from "./request-telemetry.js";

/** What an event is encoded from: a pending request, or an observer's copy of one. */
export interface EventSource {
  readonly id: number;
  readonly request: { nicId(): number };
  readonly fields: EchoRequestFields;
  readonly temporary: boolean;
  readonly receivedAtMs: number;
  readonly deadlineMs: number;
  /** The request's trace when tracing is on: its traceparent goes into the event. */
  readonly trace: StartedTrace;
}

/** A client message whose bytes are not a ClientMessage. */
export class UndecodableMessage {
  constructor(readonly reason: string) {}
}

export type ClientInput = ClientMessage | Verdicts | UndecodableMessage;
/** A ServerMessage, or one already encoded (an event batch). */
export type ServerOutput = ServerMessage | Buffer;

/** EchoForwarderService with the Connect (de)serializers above; the other methods unchanged. */
export const serviceDefinition = {
  ...EchoForwarderService,
  connect: {
    ...EchoForwarderService.connect,
    requestDeserialize: decodeClientMessage,
    responseSerialize: (value: ServerOutput): Buffer =>
      Buffer.isBuffer(value) ? value : Buffer.from(ServerMessage.encode(value).finish()),
  },
} as const;

/** A ClientMessage: verdict batches read fast, the rest by the generated code. */
export function decodeClientMessage(bytes: Uint8Array): ClientInput {
  const fast = Verdicts.read(bytes);
  if (fast !== null) return fast;
  try {
    const m = ClientMessage.decode(bytes);
    return m.message?.$case === "verdicts" ? Verdicts.of(m.message.value.verdicts) : m;
  } catch (e) {
    return new UndecodableMessage(e instanceof Error ? e.message : String(e));
  }
}

// ---- varints ----

export function varintSize(n: number): number {
  // Comparisons, not a division loop: every event field goes through here.
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 5;
  for (n = Math.floor(n / 0x800000000); n > 0; n = Math.floor(n / 128)) size++;
  return size;
}

export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  // Below 2^31 (ids, seconds, nanos, lengths…) in integer steps; above it, in float ones.
  if (n <= 0x7fffffff) {
    while (n >= 0x80) {
      buf[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[pos++] = n;
    return pos;
  }
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Field tags (field number << 3 | wire type) of the messages written or read here. */
const TAG = {
  serverMessageRequests: (2 << 3) | 2,
  batchRequests: (1 << 3) | 2,
  batchObserverDrops: 2 << 3,
  requestId: 1 << 3,
  family: 2 << 3,
  nic: 3 << 3,
  source: (4 << 3) | 2,
  destination: (5 << 3) | 2,
  ident: 6 << 3,
  sequence: 7 << 3,
  ttl: 8 << 3,
  tos: 9 << 3,
  temporary: 10 << 3,
  payload: (11 << 3) | 2,
  payloadLength: 12 << 3,
  receivedAt: (13 << 3) | 2,
  deadline: (14 << 3) | 2,
  budget: (15 << 3) | 2,
  // traceparent is field 16: its tag (16 << 3 | 2 = 130) is the varint 0x82 0x01.
  traceparent0: 0x82,
  traceparent1: 0x01,
  seconds: 1 << 3,
  nanos: 2 << 3,
  clientMessageVerdicts: (2 << 3) | 2,
  verdictBatchVerdicts: (1 << 3) | 2,
  verdictRequestId: 1 << 3,
  verdictAction: 2 << 3,
  verdictApplyToFlowMs: 3 << 3,
} as const;

/** Family enum values (FAMILY_IPV4, FAMILY_IPV6). */
const FAMILY_IPV4 = 1;
const FAMILY_IPV6 = 2;

/**
 * A google.protobuf Timestamp (since the epoch) or Duration (a span) from milliseconds; both
 * messages have the same two fields.
 */
export function protoTimeOfMs(ms: number): Timestamp & Duration {
  const seconds = secondsOf(ms);
  return { seconds: BigInt(seconds), nanos: nanosOf(ms, seconds) };
}

/** Whole seconds of a millisecond time (negative times count as 0: a spent budget). */
function secondsOf(ms: number): number {
  return ms > 0 ? Math.floor(ms / 1000) : 0;
}

/** The nanoseconds past `seconds` of a millisecond time. */
function nanosOf(ms: number, seconds: number): number {
  return ms > 0 ? Math.min(999_999_999, Math.floor((ms - seconds * 1000) * 1e6)) : 0;
}

/** A Timestamp / Duration body: seconds (1) and nanos (2), zeros left out. */
function timeBodySize(seconds: number, nanos: number): number {
  return (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
}

function writeTime(
  buf: Uint8Array,
  pos: number,
  tag: number,
  seconds: number,
  nanos: number,
): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, timeBodySize(seconds, nanos));
  if (seconds !== 0) {
    buf[pos++] = TAG.seconds;
    pos = writeVarint(buf, pos, seconds);
  }
  if (nanos !== 0) {
    buf[pos++] = TAG.nanos;
    pos = writeVarint(buf, pos, nanos);
  }
  return pos;
}

/** A uint field, left out when 0 (proto3). */
function putUint(buf: Uint8Array, pos: number, tag: number, v: number): number {
  if (v === 0) return pos;
  buf[pos++] = tag;
  return writeVarint(buf, pos, v);
}

function uintField(n: number): number {
  return n === 0 ? 0 : 1 + varintSize(n);
}

function bytesField(length: number): number {
  return length === 0 ? 0 : 1 + varintSize(length) + length;
}

/** Room kept before the events for the ServerMessage header (tag + a varint of ≤ 5 bytes). */
const HEADROOM = 6;

/** What an EventBatch holds before its first event: no buffer (an idle session costs none). */
const NO_BUFFER = Buffer.alloc(0);

/**
 * One session's batch of events, encoded once each as they are assigned, into one buffer
 * behind headroom for the ServerMessage header; take() hands the finished message over (to the
 * stream, which keeps it) and starts a new buffer. The first buffer is allocated with the
 * first event: a session that never gets one holds none.
 */
export class EventBatch {
  private buf: Buffer = NO_BUFFER;
  private pos = HEADROOM;
  /** EchoRequestBatch.observer_drops of the next take() (0: left out). */
  drops = 0;
  /** Events in the batch. */
  count = 0;

  constructor(private sizeHint = 512) {}

  /** Bytes of events in the batch. */
  get bytes(): number {
    return this.pos - HEADROOM;
  }

  /**
   * Appends one event. `payloadBytes` cuts the payload; `nowMs` (monotonic) gives the budget;
   * `wallOffsetMs` turns monotonic times into absolute timestamps.
   */
  add(p: EventSource, payloadBytes: number, nowMs: number, wallOffsetMs: number): void {
    const f = p.fields;
    const payload =
      payloadBytes >= f.payload.length ? f.payload : f.payload.subarray(0, payloadBytes);
    const nic = p.request.nicId();
    const received = wallOffsetMs + p.receivedAtMs;
    const deadline = wallOffsetMs + p.deadlineMs;
    const budget = p.deadlineMs - nowMs;
    const rs = secondsOf(received);
    const rn = nanosOf(received, rs);
    const ds = secondsOf(deadline);
    const dn = nanosOf(deadline, ds);
    const bs = secondsOf(budget);
    const bn = nanosOf(budget, bs);
    const rBody = timeBodySize(rs, rn);
    const dBody = timeBodySize(ds, dn);
    const bBody = timeBodySize(bs, bn);
    const size =
      uintField(p.id) +
      2 + // family, never 0
      uintField(nic) +
      bytesField(f.source.length) +
      bytesField(f.destination.length) +
      uintField(f.ident) +
      uintField(f.sequence) +
      uintField(f.ttl) +
      uintField(f.tos) +
      (p.temporary ? 2 : 0) +
      bytesField(payload.length) +
      uintField(f.payloadLength) +
      (1 + varintSize(rBody) + rBody) +
      (1 + varintSize(dBody) + dBody) +
      (1 + varintSize(bBody) + bBody) +
      // traceparent (field 16: a two-byte tag; its length, 55, a one-byte varint), ASCII.
      (p.trace === null ? 0 : 3 + TRACEPARENT_LENGTH);
    this.reserve(1 + varintSize(size) + size);
    const b = this.buf;
    let i = this.pos;
    b[i++] = TAG.batchRequests;
    i = writeVarint(b, i, size);
    const start = i;
    i = putUint(b, i, TAG.requestId, p.id);
    b[i++] = TAG.family;
    b[i++] = f.family === "ipv4" ? FAMILY_IPV4 : FAMILY_IPV6;
    i = putUint(b, i, TAG.nic, nic);
    i = this.putBytes(i, TAG.source, f.source);
    i = this.putBytes(i, TAG.destination, f.destination);
    i = putUint(b, i, TAG.ident, f.ident);
    i = putUint(b, i, TAG.sequence, f.sequence);
    i = putUint(b, i, TAG.ttl, f.ttl);
    i = putUint(b, i, TAG.tos, f.tos);
    if (p.temporary) {
      b[i++] = TAG.temporary;
      b[i++] = 1;
    }
    i = this.putBytes(i, TAG.payload, payload);
    i = putUint(b, i, TAG.payloadLength, f.payloadLength);
    i = writeTime(b, i, TAG.receivedAt, rs, rn);
    i = writeTime(b, i, TAG.deadline, ds, dn);
    i = writeTime(b, i, TAG.budget, bs, bn);
    if (p.trace !== null) {
      b[i++] = TAG.traceparent0;
      b[i++] = TAG.traceparent1;
      b[i++] = TRACEPARENT_LENGTH;
      i = p.trace.writeTraceparent(b, i);
    }
    if (i - start !== size) throw new Error(`event size ${i - start}, computed ${size}`);
    this.pos = i;
    this.count++;
  }

  /** The ServerMessage with every event added so far; the batch starts over. */
  take(): Buffer {
    this.reserve(0);
    if (this.drops > 0) {
      // EchoRequestBatch.observer_drops (field 2, varint) after the events.
      this.reserve(1 + varintSize(this.drops));
      this.buf[this.pos++] = TAG.batchObserverDrops;
      this.pos = writeVarint(this.buf, this.pos, this.drops);
      this.drops = 0;
    }
    const bytes = this.bytes;
    const start = HEADROOM - 1 - varintSize(bytes);
    this.buf[start] = TAG.serverMessageRequests;
    writeVarint(this.buf, start + 1, bytes);
    const out = this.buf.subarray(start, this.pos);
    // The stream keeps `out`: the next batch gets a buffer of its own (with its first event),
    // sized like the recent ones (a maximum that decays), not like the largest ever: below
    // 4 KiB, Buffer.allocUnsafe carves it from Node's shared pool instead of allocating an
    // ArrayBuffer per message.
    this.sizeHint = Math.max(256, this.pos + (this.pos >> 2), (this.sizeHint * 3) >> 2);
    this.buf = NO_BUFFER;
    this.pos = HEADROOM;
    this.count = 0;
    return out;
  }

  /** Drops the events added so far. */
  clear(): void {
    this.drops = 0;
    this.pos = HEADROOM;
    this.count = 0;
  }

  private putBytes(i: number, tag: number, v: Uint8Array): number {
    if (v.length === 0) return i;
    this.buf[i++] = tag;
    i = writeVarint(this.buf, i, v.length);
    this.buf.set(v, i);
    return i + v.length;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.buf === NO_BUFFER) {
      this.buf = Buffer.allocUnsafe(Math.max(this.sizeHint, this.pos + n));
      return;
    }
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
}

/**
 * A VerdictBatch as parallel arrays: request ids as numbers (NaN for one beyond 2^53, which
 * can name no request), actions as their enum numbers, apply_to_flow_ms. `requestIds` keeps the
 * ids as sent when they came through the generated decoder.
 */
export class Verdicts {
  constructor(
    readonly length: number,
    readonly ids: Float64Array,
    readonly actions: Int32Array,
    readonly flowMs: Float64Array,
    private readonly requestIds: readonly bigint[] | null = null,
  ) {}

  /** The id as the client sent it (for a Rejection). */
  requestId(i: number): bigint {
    return this.requestIds?.[i] ?? BigInt(this.ids[i]);
  }

  static of(vs: readonly Verdict[]): Verdicts {
    const ids = new Float64Array(vs.length);
    const actions = new Int32Array(vs.length);
    const flowMs = new Float64Array(vs.length);
    vs.forEach((v, i) => {
      ids[i] = v.requestId <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v.requestId) : Number.NaN;
      actions[i] = v.action;
      flowMs[i] = v.applyToFlowMs;
    });
    return new Verdicts(
      vs.length,
      ids,
      actions,
      flowMs,
      vs.map((v) => v.requestId),
    );
  }

  /**
   * Reads a ClientMessage that is exactly one VerdictBatch of well-formed verdicts with ids
   * below 2^53; null for anything else (the generated decoder takes it from there).
   */
  static read(b: Uint8Array): Verdicts | null {
    if (b.length < 2 || b[0] !== TAG.clientMessageVerdicts) return null;
    const r = new ProtoReader(b, 1);
    const batchEnd = r.lengthEnd();
    if (batchEnd !== b.length) return null;
    // Each verdict takes at least 2 bytes (tag, length), so this bounds the count.
    const cap = (batchEnd - r.pos) >> 1;
    const ids = new Float64Array(cap);
    const actions = new Int32Array(cap);
    const flowMs = new Float64Array(cap);
    let n = 0;
    while (r.pos < batchEnd) {
      if (r.byte() !== TAG.verdictBatchVerdicts) return null;
      const end = r.lengthEnd();
      if (end < 0 || end > batchEnd) return null;
      let id = 0;
      let action = 0;
      let ms = 0;
      while (r.pos < end) {
        const tag = r.byte();
        const v = r.varint();
        if (v < 0) return null;
        if (tag === TAG.verdictRequestId) id = v;
        else if (tag === TAG.verdictAction) action = v;
        else if (tag === TAG.verdictApplyToFlowMs) ms = v;
        else return null;
      }
      if (r.pos !== end || action > 0x7fffffff || ms > 0xffffffff) return null;
      ids[n] = id;
      actions[n] = action;
      flowMs[n] = ms;
      n++;
    }
    return new Verdicts(n, ids, actions, flowMs);
  }
}

/**
 * Just enough of a protobuf reader for Verdicts.read (and the benchmark's policy clients):
 * bytes, varints below 2^53, length-delimited fields.
 */
export class ProtoReader {
  constructor(
    private readonly b: Uint8Array,
    public pos: number,
  ) {}

  byte(): number {
    return this.pos < this.b.length ? this.b[this.pos++] : -1;
  }

  /** A varint, or -1 when it is cut short or not below 2^53. */
  varint(): number {
    let n = 0;
    let scale = 1;
    for (let k = 0; k < 8; k++) {
      const c = this.byte();
      if (c < 0) return -1;
      n += (c & 0x7f) * scale;
      if (c < 0x80) return n <= Number.MAX_SAFE_INTEGER ? n : -1;
      scale *= 128;
    }
    return -1;
  }

  /** Reads a length and returns where that many bytes end (-1 when they do not fit). */
  lengthEnd(): number {
    const len = this.varint();
    if (len < 0 || this.pos + len > this.b.length) return -1;
    return this.pos + len;
  }
}
