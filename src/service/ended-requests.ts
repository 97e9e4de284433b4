/**
 * A ring of the most recently ended requests — which session had each, how it ended, and
 * whether a synthetic reply was sent for it — so a late or stray verdict or synthetic reply is
 * rejected with the right reason (expired, already decided, foreign, not consumed, twice)
 * instead of a bare "unknown". Fixed memory: older entries are overwritten.
 */
import {
  OUTCOME_ACTIONS,
  OUTCOME_CAUSES,
  type OutcomeAction,
  type OutcomeCause,
} from "./outcomes.js";

export interface EndedRequest {
  /** The index of the session the request was last sent to. */
  readonly session: number;
  readonly action: OutcomeAction;
  readonly cause: OutcomeCause;
  readonly timedOut: boolean;
  /** A CONSUME verdict ended it: a synthetic reply may follow within the window. */
  readonly consumedByVerdict: boolean;
  /** A synthetic reply was sent for it. */
  readonly syntheticSent: boolean;
}

const SYNTHETIC_SENT = 0x80;

export class EndedRequests {
  private readonly ids: Float64Array;
  private readonly sessions: Int32Array;
  /** Low nibble: the cause's index; bits 4–5: the action's index; bit 7: synthetic sent. */
  private readonly how: Uint8Array;

  constructor(readonly capacity: number) {
    this.ids = new Float64Array(capacity);
    this.sessions = new Int32Array(capacity);
    this.how = new Uint8Array(capacity);
  }

  record(id: number, session: number, action: OutcomeAction, cause: OutcomeCause): void {
    const i = id % this.capacity;
    this.ids[i] = id;
    this.sessions[i] = session;
    this.how[i] = OUTCOME_CAUSES.indexOf(cause) | (OUTCOME_ACTIONS.indexOf(action) << 4);
  }

  /** Marks request `id` as answered by a synthetic reply (when it is still remembered). */
  markSyntheticSent(id: number): void {
    const i = id % this.capacity;
    if (this.ids[i] === id) this.how[i] |= SYNTHETIC_SENT;
  }

  /** How request `id` ended, or null when it is not (or no longer) remembered. */
  find(id: number): EndedRequest | null {
    const i = id % this.capacity;
    if (this.ids[i] !== id) return null;
    const h = this.how[i];
    const cause = OUTCOME_CAUSES[h & 0x0f];
    const action = OUTCOME_ACTIONS[(h >> 4) & 0x03];
    return {
      session: this.sessions[i],
      action,
      cause,
      timedOut: cause === "timeout",
      consumedByVerdict: action === "consume" && cause === "verdict",
      syntheticSent: (h & SYNTHETIC_SENT) !== 0,
    };
  }
}
