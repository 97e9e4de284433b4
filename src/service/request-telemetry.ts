/**
 * What the dispatcher tells telemetry about each Echo Request. The service only
 * calls these hooks; src/telemetry implements them with OpenTelemetry. With no hooks installed
 * the hot path pays one null check per request.
 */
import type { Address } from "../netstack/address.js";
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { SyntheticErrorKind } from "../netstack/icmp/synthetic-error.js";
import type { OutcomeAction, OutcomeCause } from "./outcomes.js";

/** A W3C traceparent of version 00 (`00-<32 hex>-<16 hex>-<2 hex>`) is always this long. */
export const TRACEPARENT_LENGTH = 55;

/** A traced request, as the events that carry its traceparent see it. */
interface EventTrace {
  /**
   * Writes the request's traceparent (TRACEPARENT_LENGTH ASCII characters) at `at` in `into`
   * and returns the offset after it: straight into the event, no string per request.
   */
  writeTraceparent(into: Uint8Array, at: number): number;
}

/** A sampled request: telemetry has spans to end; its traceparent changes as sessions decide it. */
export interface RequestTrace extends EventTrace {
  readonly sampled: true;
}

/** An unsampled request: its events carry a traceparent (flags 00) and telemetry keeps nothing. */
export interface UnsampledTrace extends EventTrace {
  readonly sampled: false;
}

/** What requestStarted gives; null when tracing is off. */
export type StartedTrace = RequestTrace | UnsampledTrace | null;

/** Who is deciding a request: a decide session as telemetry names it. */
export interface DecidingSession {
  /** The session id given in Welcome. */
  readonly sessionId: string;
  /** Hello.client_name. */
  readonly clientName: string;
  /** The Connect call's trace link (call-telemetry.ts): what its decisions link to. */
  readonly streamLink: unknown;
}

/** A synthetic answer to a sampled consumed request, as its span records it. */
export interface SyntheticAnswerTrace {
  /** The Echo Reply, or the ICMP error's kind. */
  readonly kind: "echoReply" | SyntheticErrorKind;
  /** The error's source (the router's address); null for an Echo Reply. */
  readonly source: Address | null;
  /** Milliseconds from the CONSUME verdict to the answer. */
  readonly delayMs: number;
  /** Why it was not sent (the Rejection's message); null when it was. */
  readonly problem: string | null;
}

export interface RequestTelemetry {
  /** A request reaches the dispatcher; null when it is not traced. */
  requestStarted(fields: EchoRequestFields, temporary: boolean): StartedTrace;
  /**
   * The sampled request was handed to `session` for a decision (again, after a re-dispatch).
   * Not called for unsampled traces: there is nothing to record.
   */
  decisionStarted(trace: RequestTrace, session: DecidingSession): void;
  /**
   * The request's one outcome. `session` is the session that held it (null when it never went
   * to one); `decisionMs` is receive-to-verdict time for a verdict, else -1.
   */
  requestEnded(
    trace: StartedTrace,
    action: OutcomeAction,
    cause: OutcomeCause,
    session: DecidingSession | null,
    decisionMs: number,
  ): void;
  /**
   * A session answered a sampled request it had consumed with a SyntheticReply (sent, or
   * refused once the service held its copy). Optional: only tracing records it.
   */
  syntheticAnswered?(
    trace: RequestTrace,
    session: DecidingSession,
    answer: SyntheticAnswerTrace,
  ): void;
  /** A decide session closed: nothing is recorded for it afterwards. */
  sessionEnded(session: DecidingSession): void;
}
