/**
 * Proxy-owned replies: a decide session that consumed a request may later ask the service to
 * answer it (a SyntheticReply) — with its Echo Reply, or with an ICMP error from a router's
 * address — once, within the window after its CONSUME verdict.
 * This module keeps what such a reply needs of each consumed request (SyntheticRecords), sends
 * the reply through the installed synthesizer, and explains every refusal. The dispatcher tells
 * it about consumed requests and asks it to answer; what it needs to know of requests it no
 * longer holds comes through RequestHistory.
 */
import type { Address } from "../netstack/address.js";
import type { TcpipError } from "../netstack/errors.js";
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { ForwarderRequest } from "../netstack/icmp/forwarder.js";
import { type EchoRequestCopy, sendSyntheticEchoReply } from "../netstack/icmp/synthetic.js";
import {
  type SyntheticErrorKind,
  sendSyntheticError,
  syntheticErrorSourceProblem,
} from "../netstack/icmp/synthetic-error.js";
import type { ProtocolStack } from "../netstack/protocol.js";
import type { EndedRequest } from "./ended-requests.js";
import type { RejectionKind } from "./errors.js";
import type { Outcomes } from "./outcomes.js";
import type {
  DecidingSession,
  RequestTelemetry,
  StartedTrace,
  SyntheticAnswerTrace,
} from "./request-telemetry.js";
import { type HeldTrace, type SyntheticLimits, SyntheticRecords } from "./synthetic-records.js";

/** Sends what a SyntheticReply asks for a consumed request (stackSynthesizer binds the stack). */
export interface Synthesizer {
  /** The Echo Reply, with the client's payload or the request's own. */
  echoReply(copy: EchoRequestCopy, payload: Uint8Array | undefined): TcpipError | null;
  /** Why an error from `source` cannot be sent about `copy` (asked before the copy is spent). */
  errorSourceProblem(copy: EchoRequestCopy, source: Address): string | null;
  /** The ICMP error, from `source`. */
  error(copy: EchoRequestCopy, kind: SyntheticErrorKind, source: Address): TcpipError | null;
}

/** The netstack's own synthetic paths (netstack/icmp/synthetic.ts, synthetic-error.ts). */
export function stackSynthesizer(stack: ProtocolStack): Synthesizer {
  return {
    echoReply: (copy, payload) =>
      sendSyntheticEchoReply(stack, copy, payload === undefined ? {} : { payload }),
    errorSourceProblem: (copy, source) => syntheticErrorSourceProblem(stack, copy, source),
    error: (copy, kind, source) => sendSyntheticError(stack, copy, { kind, source }),
  };
}

/** What a SyntheticReply asks for (session.ts reads it off the wire). */
export type SyntheticAnswer =
  | { readonly kind: "echoReply"; readonly payload: Uint8Array | undefined }
  | {
      readonly kind: "error";
      readonly error: SyntheticErrorKind;
      readonly source: Address;
      /** The source as the client wrote it, for messages. */
      readonly sourceText: string;
    };

/** The session that consumed a request, or answers it: its dispatcher index and its name. */
export interface AnsweringSession {
  readonly index: number;
  readonly meta: DecidingSession;
}

/** Why a client message was refused; the dispatcher counts it and tells the session. */
export interface Refusal {
  readonly kind: RejectionKind;
  readonly message: string;
}

/** The refusal of a message about a request that was sent to another session. */
export function foreignRequest(id: number): Refusal {
  return { kind: "foreignRequest", message: `request ${id} was sent to another session` };
}

/** What the dispatcher knows of requests the store does not hold (to explain a refusal). */
export interface RequestHistory {
  /** The index of the session a pending request waits on; null when `id` is not pending. */
  pendingSession(id: number): number | null;
  /** How request `id` ended; null when it is unknown or no longer remembered. */
  ended(id: number): EndedRequest | null;
  /** Marks an ended request as answered by a synthetic reply. */
  markSyntheticSent(id: number): void;
}

/**
 * The largest SyntheticReply.payload a reply can carry. The synthetic reply is one IP datagram
 * the netstack builds itself: IPv4, a 20-byte header (no options, whatever the request had)
 * inside the 65,535-byte total length, then the 8-byte Echo header; IPv6, the 8-byte Echo
 * header inside the 65,535-byte payload length (no extension headers). A longer payload would
 * leave as a fragment train no host reassembles.
 */
export const SYNTHETIC_PAYLOAD_LIMIT = {
  ipv4: 65_535 - 20 - 8,
  ipv6: 65_535 - 8,
} as const;

/** The bounds on the copies kept, unless the dispatcher's options say. */
export const DEFAULT_SYNTHETIC_BOUNDS: Omit<SyntheticLimits, "windowMs"> = {
  maxRecords: 65536,
  maxBytes: 64 << 20,
};

export class SyntheticReplies {
  private readonly records: SyntheticRecords;

  /**
   * `synthesizer` null: no stack to send from, so every reply finds no route.
   * `telemetry` null: synthetic answers are not traced.
   */
  constructor(
    limits: Pick<SyntheticLimits, "windowMs"> & Partial<SyntheticLimits>,
    private readonly synthesizer: Synthesizer | null,
    private readonly counters: Outcomes,
    private readonly history: RequestHistory,
    private readonly telemetry: RequestTelemetry | null = null,
  ) {
    const d = DEFAULT_SYNTHETIC_BOUNDS;
    this.records = new SyntheticRecords({
      windowMs: limits.windowMs,
      maxRecords: limits.maxRecords ?? d.maxRecords,
      maxBytes: limits.maxBytes ?? d.maxBytes,
    });
  }

  /** The window in ms (0: synthetic replies are off). */
  get windowMs(): number {
    return this.records.limits.windowMs;
  }

  /** Copies held (expired ones dropped first), and their ICMP bytes. */
  held(nowMs: number): { records: number; bytes: number } {
    this.records.expire(nowMs);
    return { records: this.records.size, bytes: this.records.bytes };
  }

  /**
   * Request `id` was just consumed by a verdict of session `session`, and is still live: the
   * store copies what a later synthetic reply needs from the fields already read (no second
   * pass over the packet), and a sampled request's trace.
   */
  consumed(
    id: number,
    session: number,
    req: ForwarderRequest,
    f: EchoRequestFields,
    nowMs: number,
    trace: StartedTrace = null,
  ): void {
    if (this.records.limits.windowMs === 0) return;
    const copy: EchoRequestCopy = {
      nicId: req.nicId(),
      family: f.family,
      source: f.source,
      destination: f.destination,
      tos: f.tos,
      networkHeader: f.networkHeader,
      icmp: f.message,
      localAddressBroadcast: req.packetInfo().localAddressBroadcast,
    };
    // Only a sampled request's trace is kept (its synthetic answer gets a span).
    const held = trace?.sampled === true && this.telemetry?.syntheticAnswered ? trace : null;
    this.counters.syntheticEvicted += this.records.add(id, session, copy, nowMs, held);
    this.counters.syntheticRecorded++;
  }

  /**
   * A SyntheticReply from session `session`: the Echo Reply goes out once, only for a request
   * this session consumed within the window. Null when it was sent; otherwise the refusal.
   */
  reply(
    session: AnsweringSession,
    requestId: bigint,
    answer: SyntheticAnswer,
    nowMs: number,
  ): Refusal | null {
    const id = requestId <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(requestId) : Number.NaN;
    const r = this.records.get(id, nowMs);
    if (r === null || r.session !== session.index) return this.whyNot(session.index, requestId, id);
    // Refused before anything is spent: the copy stays, so a corrected answer may follow.
    const invalid = this.invalid(r.copy, answer);
    if (invalid !== null) {
      const message = `request ${id}: ${invalid}; nothing sent`;
      this.traced(this.records.trace(id, nowMs), session, answer, nowMs, message);
      return { kind: "invalidArgument", message };
    }
    const held = this.records.trace(id, nowMs);
    this.records.delete(id);
    this.history.markSyntheticSent(id);
    const s = this.synthesizer;
    const err =
      s === null
        ? ({ kind: "noRoute", message: "no netstack is installed" } as const)
        : answer.kind === "echoReply"
          ? s.echoReply(r.copy, answer.payload)
          : s.error(r.copy, answer.error, answer.source);
    if (err === null) {
      if (answer.kind === "echoReply") this.counters.syntheticSent++;
      else this.counters.syntheticErrors[answer.error]++;
      this.traced(held, session, answer, nowMs, null);
      return null;
    }
    const kind =
      err.kind === "noRoute"
        ? "noRoute"
        : err.kind === "rateLimited"
          ? "rateLimited"
          : "invalidArgument";
    const what = answer.kind === "echoReply" ? "synthetic reply" : "synthetic error";
    const message = `request ${id}: the ${what} was not sent: ${err.message}`;
    this.traced(held, session, answer, nowMs, message);
    return { kind, message };
  }

  /** Records the answer in a sampled request's trace (nothing for an unsampled one). */
  private traced(
    held: HeldTrace | null,
    session: AnsweringSession,
    answer: SyntheticAnswer,
    nowMs: number,
    problem: string | null,
  ): void {
    if (held === null) return;
    const a: SyntheticAnswerTrace = {
      kind: answer.kind === "echoReply" ? "echoReply" : answer.error,
      source: answer.kind === "echoReply" ? null : answer.source,
      delayMs: nowMs - held.consumedAtMs,
      problem,
    };
    this.telemetry?.syntheticAnswered?.(held.trace, session.meta, a);
  }

  /** Why `answer` cannot be sent for `copy` whatever the stack's state; null when it can. */
  private invalid(copy: EchoRequestCopy, answer: SyntheticAnswer): string | null {
    const family = copy.family === "ipv4" ? "IPv4" : "IPv6";
    if (answer.kind === "echoReply") {
      const limit = SYNTHETIC_PAYLOAD_LIMIT[copy.family];
      const n = answer.payload?.length ?? 0;
      return n > limit
        ? `payload: at most ${limit} bytes for an ${family} Echo Reply, got ${n}`
        : null;
    }
    const problem = this.synthesizer?.errorSourceProblem(copy, answer.source) ?? null;
    return problem === null
      ? null
      : `error.source: ${answer.sourceText} is ${problem} (the request is ${family})`;
  }

  /** Why the store holds no copy of request `id` for session `session`. */
  private whyNot(session: number, requestId: bigint, id: number): Refusal {
    const notAllowed = (why: string): Refusal => ({
      kind: "syntheticNotAllowed",
      message: `request ${requestId}: ${why}`,
    });
    const pendingOn = this.history.pendingSession(id);
    if (pendingOn !== null)
      return pendingOn === session
        ? notAllowed("not consumed yet: send ACTION_CONSUME first")
        : foreignRequest(id);
    const e = this.history.ended(id);
    if (e === null)
      return { kind: "unknownRequest", message: `no consumed request ${requestId} is remembered` };
    if (e.session !== session) return foreignRequest(id);
    if (e.syntheticSent) return notAllowed("a synthetic reply was already sent (once per request)");
    if (!e.consumedByVerdict)
      return notAllowed(`not consumed by a verdict: its outcome was ${e.action} (${e.cause})`);
    const windowMs = this.records.limits.windowMs;
    if (windowMs === 0) return notAllowed("synthetic replies are off (--synthetic-window 0)");
    return notAllowed(
      `too late: the synthetic-reply window (${windowMs} ms) has passed, or its copy was evicted`,
    );
  }
}
