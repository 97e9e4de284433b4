/**
 * A ring of the most recently ended requests — which session had each and why it ended — so a
 * late or stray verdict is rejected with the right reason (expired, already decided, foreign)
 * instead of a bare "unknown". Fixed memory: older entries are overwritten.
 */
import type { OutcomeCause } from "./outcomes.js";

export interface EndedRequest {
  /** The index of the session the request was last sent to. */
  readonly session: number;
  readonly timedOut: boolean;
}

export class EndedRequests {
  private readonly ids: Float64Array;
  private readonly sessions: Int32Array;
  private readonly timedOut: Uint8Array;

  constructor(readonly capacity: number) {
    this.ids = new Float64Array(capacity);
    this.sessions = new Int32Array(capacity);
    this.timedOut = new Uint8Array(capacity);
  }

  record(id: number, session: number, cause: OutcomeCause): void {
    const i = id % this.capacity;
    this.ids[i] = id;
    this.sessions[i] = session;
    this.timedOut[i] = cause === "timeout" ? 1 : 0;
  }

  /** How request `id` ended, or null when it is not (or no longer) remembered. */
  find(id: number): EndedRequest | null {
    const i = id % this.capacity;
    if (this.ids[i] !== id) return null;
    return { session: this.sessions[i], timedOut: this.timedOut[i] === 1 };
  }
}
