/**
 * The service's counters: every Echo Request's one outcome (what was done, and why), the
 * rejections by reason, and the rest of the dispatcher's bookkeeping. Plain number fields: the
 * hot path only increments them.
 */
import {
  SYNTHETIC_ERROR_KINDS,
  type SyntheticErrorKind,
} from "../netstack/icmp/synthetic-error.js";
import { REJECTION_KINDS, type RejectionKind } from "./errors.js";

/** What was done with a request: the verdict's action, or a default action. */
export type OutcomeAction = "reply" | "consume" | "fallthrough";

/** A default action of the failure policy: fail-open or fail-closed. */
export type PolicyAction = "fallthrough" | "consume";

/** Why the request got its outcome. */
export type OutcomeCause =
  /** A session's verdict for this request. */
  | "verdict"
  /** An earlier verdict with apply_to_flow_ms covering this request's flow. */
  | "flow"
  /** The deadline passed first: on-timeout. */
  | "timeout"
  /** No decide session could ever take it (none connected, none matching, draining): on-no-client. */
  | "noClient"
  /** Matching sessions exist but none could take it now, or the pending bound was reached: on-overload. */
  | "overload"
  /** Its session ended and no other could take it within the budget: on-disconnect. */
  | "disconnect"
  /** The Forwarder's own held-packet bound refused it before the dispatcher saw it: on-overload. */
  | "forwarderOverflow";

export const OUTCOME_ACTIONS: readonly OutcomeAction[] = ["reply", "consume", "fallthrough"];
export const OUTCOME_CAUSES: readonly OutcomeCause[] = [
  "verdict",
  "flow",
  "timeout",
  "noClient",
  "overload",
  "disconnect",
  "forwarderOverflow",
];

type ByCause = Record<OutcomeCause, number>;

function zeroCauses(): ByCause {
  return {
    verdict: 0,
    flow: 0,
    timeout: 0,
    noClient: 0,
    overload: 0,
    disconnect: 0,
    forwarderOverflow: 0,
  };
}

export class Outcomes {
  /** Echo Requests the dispatcher saw (each gets exactly one outcome). */
  requests = 0;
  /** Other ICMP messages handed to the handler: not dispatched, answered false at once. */
  nonEcho = 0;
  /** Requests moved to another session when theirs ended. */
  redispatched = 0;
  /** Flow verdicts evicted from the full table before they expired. */
  flowEvictions = 0;
  sessionsOpened = 0;
  sessionsClosed = 0;
  /** Copies queued for observe sessions. */
  observerCopies = 0;
  /** Copies an observe session lost because its queue was full. */
  observerDrops = 0;
  /** Consumed requests copied for a later synthetic reply. */
  syntheticRecorded = 0;
  /** Synthetic Echo Replies sent. */
  syntheticSent = 0;
  /** Synthetic ICMP errors sent, by type. */
  readonly syntheticErrors: Record<SyntheticErrorKind, number> = Object.fromEntries(
    SYNTHETIC_ERROR_KINDS.map((k) => [k, 0]),
  ) as Record<SyntheticErrorKind, number>;
  /** Copies evicted before their window ended (the count or byte bound was reached). */
  syntheticEvicted = 0;
  readonly outcomes: Record<OutcomeAction, ByCause> = {
    reply: zeroCauses(),
    consume: zeroCauses(),
    fallthrough: zeroCauses(),
  };
  /** The same outcomes split by address family (for icmpfwd_requests_total{family}). */
  readonly byFamily: Record<"ipv4" | "ipv6", Record<OutcomeAction, ByCause>> = {
    ipv4: { reply: zeroCauses(), consume: zeroCauses(), fallthrough: zeroCauses() },
    ipv6: { reply: zeroCauses(), consume: zeroCauses(), fallthrough: zeroCauses() },
  };
  readonly rejections: Record<RejectionKind, number> = Object.fromEntries(
    REJECTION_KINDS.map((k) => [k, 0]),
  ) as Record<RejectionKind, number>;

  /** Outcomes counted so far, over every action and cause. */
  decided(): number {
    let n = 0;
    for (const a of OUTCOME_ACTIONS) for (const c of OUTCOME_CAUSES) n += this.outcomes[a][c];
    return n;
  }

  /** Dotted names for the stats dump and GetStats (`service.outcomes.consume.timeout`, …). */
  flatten(prefix = "service"): Record<string, number> {
    const out: Record<string, number> = {
      [`${prefix}.requests`]: this.requests,
      [`${prefix}.nonEcho`]: this.nonEcho,
      [`${prefix}.redispatched`]: this.redispatched,
      [`${prefix}.flowEvictions`]: this.flowEvictions,
      [`${prefix}.sessions.opened`]: this.sessionsOpened,
      [`${prefix}.sessions.closed`]: this.sessionsClosed,
      [`${prefix}.observers.copies`]: this.observerCopies,
      [`${prefix}.observers.drops`]: this.observerDrops,
      [`${prefix}.synthetic.recorded`]: this.syntheticRecorded,
      [`${prefix}.synthetic.sent`]: this.syntheticSent,
      [`${prefix}.synthetic.evicted`]: this.syntheticEvicted,
    };
    for (const a of OUTCOME_ACTIONS)
      for (const c of OUTCOME_CAUSES) out[`${prefix}.outcomes.${a}.${c}`] = this.outcomes[a][c];
    for (const k of REJECTION_KINDS) out[`${prefix}.rejections.${k}`] = this.rejections[k];
    for (const k of SYNTHETIC_ERROR_KINDS)
      out[`${prefix}.synthetic.errors.${k}`] = this.syntheticErrors[k];
    return out;
  }
}
