/**
 * Recent receive-to-verdict times, overall and per decide session, for EchoAdmin's
 * GetDecisionStats (what `icmpfwd top` shows as p50 / p99). It sits in the dispatcher's
 * telemetry hook, in front of the OpenTelemetry hooks when those are on: each verdict costs one
 * write into a fixed ring; percentiles are computed only when asked.
 */
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { OutcomeAction, OutcomeCause } from "./outcomes.js";
import type {
  DecidingSession,
  RequestTelemetry,
  RequestTrace,
  StartedTrace,
  SyntheticAnswerTrace,
} from "./request-telemetry.js";

/** Room a ring starts with; it doubles as samples come, up to its capacity. */
const FIRST_ROOM = 64;

/**
 * The last `capacity` samples: when each was taken and its value. The arrays grow with the
 * samples (a session that decides a few requests holds 1 KiB, not 64 KiB per ring).
 */
export class SampleRing {
  private at: Float64Array;
  private values: Float64Array;
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    const room = Math.min(capacity, FIRST_ROOM);
    this.at = new Float64Array(room);
    this.values = new Float64Array(room);
  }

  add(atMs: number, value: number): void {
    // Full but below capacity: it has never wrapped, so the samples are in order from 0.
    if (this.count === this.at.length && this.count < this.capacity) this.grow();
    this.at[this.next] = atMs;
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.at.length;
    if (this.count < this.capacity) this.count++;
  }

  private grow(): void {
    const room = Math.min(this.capacity, this.at.length * 2);
    const at = new Float64Array(room);
    const values = new Float64Array(room);
    at.set(this.at);
    values.set(this.values);
    this.at = at;
    this.values = values;
    this.next = this.count;
  }

  /** The values taken at or after `sinceMs`, sorted ascending. */
  since(sinceMs: number): Float64Array {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) if (this.at[i] >= sinceMs) out.push(this.values[i]);
    return Float64Array.from(out).sort();
  }
}

export interface LatencySummary {
  decisions: number;
  /** Milliseconds; 0 without decisions. */
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of sorted values (0 for none). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export function summarize(sorted: Float64Array): LatencySummary {
  return {
    decisions: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length === 0 ? 0 : sorted[sorted.length - 1],
  };
}

/** Samples kept: overall, and per session. */
const ALL_SAMPLES = 16384;
const SESSION_SAMPLES = 4096;
/** Sessions remembered; the oldest go first (ended sessions are dropped when stats are read). */
const MAX_SESSIONS = 1024;

export class DecisionLatencies implements RequestTelemetry {
  private readonly all = new SampleRing(ALL_SAMPLES);
  private readonly bySession = new Map<string, SampleRing>();

  constructor(
    /** The OpenTelemetry hooks, when on; every call is passed on. */
    readonly inner: RequestTelemetry | null,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  requestStarted(fields: EchoRequestFields, temporary: boolean): StartedTrace {
    return this.inner === null ? null : this.inner.requestStarted(fields, temporary);
  }

  decisionStarted(trace: RequestTrace, session: DecidingSession): void {
    this.inner?.decisionStarted(trace, session);
  }

  requestEnded(
    trace: StartedTrace,
    action: OutcomeAction,
    cause: OutcomeCause,
    session: DecidingSession | null,
    decisionMs: number,
  ): void {
    if (decisionMs >= 0) this.record(session?.sessionId ?? "", decisionMs);
    this.inner?.requestEnded(trace, action, cause, session, decisionMs);
  }

  syntheticAnswered(
    trace: RequestTrace,
    session: DecidingSession,
    answer: SyntheticAnswerTrace,
  ): void {
    this.inner?.syntheticAnswered?.(trace, session, answer);
  }

  sessionEnded(session: DecidingSession): void {
    // Its ring (up to 64 KiB) goes now rather than at the next GetDecisionStats, which shows only
    // open sessions anyway: thousands of short sessions must not hold memory.
    this.bySession.delete(session.sessionId);
    this.inner?.sessionEnded(session);
  }

  record(sessionId: string, ms: number): void {
    const now = this.nowMs();
    this.all.add(now, ms);
    let ring = this.bySession.get(sessionId);
    if (ring === undefined) {
      if (this.bySession.size >= MAX_SESSIONS) {
        const oldest = this.bySession.keys().next();
        if (!oldest.done) this.bySession.delete(oldest.value);
      }
      ring = new SampleRing(SESSION_SAMPLES);
      this.bySession.set(sessionId, ring);
    }
    ring.add(now, ms);
  }

  /** Over the last `windowMs`. */
  overall(windowMs: number): LatencySummary {
    return summarize(this.all.since(this.nowMs() - windowMs));
  }

  session(sessionId: string, windowMs: number): LatencySummary {
    const ring = this.bySession.get(sessionId);
    return summarize(
      ring === undefined ? new Float64Array(0) : ring.since(this.nowMs() - windowMs),
    );
  }

  /** Forgets sessions that are not in `open`. */
  retain(open: ReadonlySet<string>): void {
    for (const id of this.bySession.keys()) if (!open.has(id)) this.bySession.delete(id);
  }
}
