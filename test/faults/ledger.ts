/**
 * Per-request accounting for the fault-injection runs: a RequestTelemetry (the service calls
 * requestStarted / requestEnded exactly once per Echo Request) that records, for every request
 * by its (family, ident, sequence), how often it started, how often it ended and with what, how
 * many Echo Replies left the link for it and how many synthetic replies the service sent. All
 * arrays are allocated (and touched) up front, so the accounting itself does not grow memory.
 */
import type { EchoRequestFields } from "../../src/netstack/icmp/echo-fields.js";
import type { OutcomeAction, OutcomeCause } from "../../src/service/index.js";
import { OUTCOME_ACTIONS, OUTCOME_CAUSES } from "../../src/service/outcomes.js";
import type { RequestTelemetry, RequestTrace } from "../../src/service/request-telemetry.js";
import { traceparentWriter } from "../helpers/traceparent-writer.js";

// The outcome indexes stored per key are indexes into the service's own lists.
export const ACTIONS: readonly OutcomeAction[] = OUTCOME_ACTIONS;
export const CAUSES: readonly OutcomeCause[] = OUTCOME_CAUSES;

interface KeyedTrace extends RequestTrace {
  readonly key: number;
}

/** What every event of a fault run carries (the ledger keys requests by their fields). */
const writeTraceparent = traceparentWriter(`00-${"1".repeat(32)}-${"2".repeat(16)}-01`);

export type Family = "ipv4" | "ipv6";

/** Reads an Echo Reply written to the link: its family, ident and sequence; null otherwise. */
export function echoReplyKey(
  p: Uint8Array,
): { family: Family; ident: number; sequence: number } | null {
  if (p.length < 28) return null;
  const version = p[0] >> 4;
  if (version === 4) {
    const ihl = (p[0] & 0x0f) * 4;
    // Protocol ICMP, not a fragment, Echo Reply.
    if (p[9] !== 1 || ((p[6] & 0x1f) | p[7]) !== 0 || p.length < ihl + 8 || p[ihl] !== 0)
      return null;
    return {
      family: "ipv4",
      ident: (p[ihl + 4] << 8) | p[ihl + 5],
      sequence: (p[ihl + 6] << 8) | p[ihl + 7],
    };
  }
  if (version === 6 && p.length >= 48 && p[6] === 58 && p[40] === 129)
    return { family: "ipv6", ident: (p[44] << 8) | p[45], sequence: (p[46] << 8) | p[47] };
  return null;
}

export class Ledger implements RequestTelemetry {
  readonly size: number;
  /** requestStarted calls per key. */
  readonly started: Uint8Array;
  /** requestEnded calls per key. */
  readonly ended: Uint8Array;
  /** The last outcome per key: index into ACTIONS / CAUSES. */
  readonly action: Uint8Array;
  readonly cause: Uint8Array;
  /** Echo Replies written to the link per key. */
  readonly replies: Uint8Array;
  /** Synthetic replies the service sent per key. */
  readonly synthetic: Uint8Array;
  /** (family, ident) → slot; a key is sequence * slots + slot. */
  private readonly slotOf = new Map<string, number>();
  readonly slotInfo: { family: Family; ident: number }[] = [];
  /** Requests outside the key space (more idents or sequences than planned). */
  outside = 0;
  /** requestEnded without a trace, or replies outside the key space. */
  untraced = 0;
  strayReplies = 0;

  constructor(
    readonly slots: number,
    readonly sequences: number,
  ) {
    this.size = slots * sequences;
    const array = (): Uint8Array => new Uint8Array(this.size).fill(1).fill(0);
    this.started = array();
    this.ended = array();
    this.action = array();
    this.cause = array();
    this.replies = array();
    this.synthetic = array();
  }

  /** The key of a request; -1 when it does not fit the planned key space. */
  keyOf(family: Family, ident: number, sequence: number, create = true): number {
    const id = `${family}/${ident}`;
    let slot = this.slotOf.get(id);
    if (slot === undefined) {
      if (!create || this.slotInfo.length >= this.slots) return -1;
      slot = this.slotInfo.length;
      this.slotOf.set(id, slot);
      this.slotInfo.push({ family, ident });
    }
    if (sequence >= this.sequences) return -1;
    return sequence * this.slots + slot;
  }

  /** Which (family, ident, sequence) a key stands for. */
  describe(key: number): string {
    const s = this.slotInfo[key % this.slots];
    return `${s?.family ?? "?"} ident ${s?.ident ?? "?"} seq ${Math.floor(key / this.slots)}`;
  }

  // ---- RequestTelemetry ----

  requestStarted(f: EchoRequestFields): RequestTrace {
    const key = this.keyOf(f.family, f.ident, f.sequence);
    if (key < 0) this.outside++;
    else if (this.started[key] < 255) this.started[key]++;
    const t: KeyedTrace = { sampled: true, writeTraceparent, key };
    return t;
  }

  decisionStarted(): void {}

  requestEnded(trace: RequestTrace | null, action: OutcomeAction, cause: OutcomeCause): void {
    if (trace === null) {
      this.untraced++;
      return;
    }
    const key = (trace as KeyedTrace).key;
    if (key < 0) return;
    if (this.ended[key] < 255) this.ended[key]++;
    this.action[key] = ACTIONS.indexOf(action);
    this.cause[key] = CAUSES.indexOf(cause);
  }

  sessionEnded(): void {}

  streamLink(): unknown {
    return undefined;
  }

  // ---- what left the link ----

  replyWritten(packet: Uint8Array): void {
    const r = echoReplyKey(packet);
    if (r === null) return;
    const key = this.keyOf(r.family, r.ident, r.sequence, false);
    if (key < 0) this.strayReplies++;
    else if (this.replies[key] < 255) this.replies[key]++;
  }

  syntheticSent(family: Family, icmp: Uint8Array): void {
    const key = this.keyOf(family, (icmp[4] << 8) | icmp[5], (icmp[6] << 8) | icmp[7], false);
    if (key >= 0 && this.synthetic[key] < 255) this.synthetic[key]++;
  }

  // ---- the checks ----

  /** Outcomes by "action.cause", from the per-key records. */
  outcomes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let k = 0; k < this.size; k++) {
      if (this.ended[k] === 0) continue;
      const name = `${ACTIONS[this.action[k]]}.${CAUSES[this.cause[k]]}`;
      out[name] = (out[name] ?? 0) + 1;
    }
    return out;
  }

  /**
   * Checks every key: a request the load sent (`expected(key)`) started exactly once and ended
   * exactly once; a key nobody sent never started; the Echo Replies that left the link for it
   * are exactly what its outcome promises (reply and fallthrough: one built-in reply; consume:
   * none) plus its synthetic reply. Returns the problems (empty: all good) and the totals.
   */
  check(
    expected: (key: number) => boolean,
    /** Count sent requests that never reached the service (dropped on the way) instead. */
    missingOk = false,
  ): {
    problems: string[];
    requests: number;
    missing: number;
    answered: number;
    synthetic: number;
  } {
    const problems: string[] = [];
    const kinds = new Map<string, number>();
    const note = (kind: string, key: number, detail: string): void => {
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      if (problems.length < 20) problems.push(`${this.describe(key)}: ${kind} (${detail})`);
    };
    let requests = 0;
    let missing = 0;
    let answered = 0;
    let synthetic = 0;
    for (let k = 0; k < this.size; k++) {
      const sent = expected(k);
      const started = this.started[k];
      const ended = this.ended[k];
      if (!sent) {
        if (started !== 0 || ended !== 0 || this.replies[k] !== 0)
          note("a request nobody sent", k, `started ${started}, ended ${ended}`);
        continue;
      }
      requests++;
      if (missingOk && started === 0 && ended === 0 && this.replies[k] === 0) {
        missing++;
        continue;
      }
      answered += this.replies[k];
      synthetic += this.synthetic[k];
      if (started !== 1) note("not started exactly once", k, `started ${started}`);
      if (ended !== 1) {
        note("not exactly one outcome", k, `ended ${ended}`);
        continue;
      }
      const action = ACTIONS[this.action[k]];
      const builtIn = action === "consume" ? 0 : 1;
      if (this.synthetic[k] > 1) note("more than one synthetic reply", k, `${this.synthetic[k]}`);
      if (this.synthetic[k] > 0 && action !== "consume")
        note("a synthetic reply after a non-consume outcome", k, action);
      if (this.replies[k] !== builtIn + this.synthetic[k])
        note(
          "replies on the link do not match the outcome",
          k,
          `${action}.${CAUSES[this.cause[k]]}: ${this.replies[k]} replies, ${this.synthetic[k]} synthetic`,
        );
    }
    if (this.outside > 0) problems.push(`${this.outside} requests outside the planned key space`);
    if (this.untraced > 0) problems.push(`${this.untraced} outcomes without a trace`);
    if (this.strayReplies > 0) problems.push(`${this.strayReplies} Echo Replies for no request`);
    for (const [kind, n] of kinds) if (n > 1) problems.push(`${n} × ${kind}`);
    return { problems, requests, missing, answered, synthetic };
  }
}
