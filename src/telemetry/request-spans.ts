/**
 * The spans and decision-time histogram, fed by the dispatcher's hooks: one
 * `icmpfwd.echo_request` span per Echo Request from receive to outcome, a child
 * `icmpfwd.decide` span while a session decides it (linked to the session's Connect stream),
 * and the traceparent the client continues from. Sampling is decided first (RequestSampler): an
 * unsampled request gets only its ids (UnsampledTraceparent), no span.
 */
import {
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { formatAddress } from "../netstack/address.js";
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { OutcomeAction, OutcomeCause } from "../service/outcomes.js";
import type {
  DecidingSession,
  RequestTelemetry,
  RequestTrace,
  StartedTrace,
  SyntheticAnswerTrace,
} from "../service/request-telemetry.js";
import type { DecisionHistograms } from "./decision-histograms.js";
import type { RequestSampler } from "./request-sampling.js";
import { writeTraceparentOf } from "./traceparent-bytes.js";

/** Outcome causes as metric and span attribute values (snake_case, as Prometheus labels go). */
export const CAUSE_LABEL: Readonly<Record<OutcomeCause, string>> = {
  verdict: "verdict",
  flow: "flow",
  timeout: "timeout",
  noClient: "no_client",
  overload: "overload",
  disconnect: "disconnect",
  forwarderOverflow: "forwarder_overflow",
};

class TracedRequest implements RequestTrace {
  readonly sampled = true;
  decide: Span | null = null;

  constructor(public span: Span) {}

  /** The decide span's while a session decides (the client continues from it). */
  writeTraceparent(into: Uint8Array, at: number): number {
    return writeTraceparentOf((this.decide ?? this.span).spanContext(), into, at);
  }

  /**
   * After the request's outcome the spans are let go, only the request span's context kept: a
   * consumed request's trace stays in the synthetic store for its window (tens of thousands at
   * 100 % sampling), and two ended spans each kept that long filled the old generation.
   */
  release(): void {
    this.span = trace.wrapSpanContext(this.span.spanContext());
    this.decide = null;
  }
}

/** Synthetic answer kinds as span attribute values. */
export const SYNTHETIC_KIND_LABEL: Readonly<Record<SyntheticAnswerTrace["kind"], string>> = {
  echoReply: "echo_reply",
  timeExceeded: "time_exceeded",
  netUnreachable: "net_unreachable",
  hostUnreachable: "host_unreachable",
  protocolUnreachable: "protocol_unreachable",
  portUnreachable: "port_unreachable",
  adminProhibited: "admin_prohibited",
};

/** Tracing for requests: the tracer, and the sampler that is also its provider's id generator. */
export interface RequestTracing {
  readonly tracer: Tracer;
  /** Must be the idGenerator of the tracer's provider, built from the provider's sampler. */
  readonly sampler: RequestSampler;
}

export class OtelRequestTelemetry implements RequestTelemetry {
  private readonly tracer: Tracer | null;
  private readonly sampler: RequestSampler | null;

  /**
   * @param tracing null: tracing is off (requestStarted returns null, nothing is traced).
   * @param decisions icmpfwd_decision_duration_seconds, or null without metrics.
   */
  constructor(
    tracing: RequestTracing | null,
    private readonly decisions: DecisionHistograms | null,
  ) {
    this.tracer = tracing?.tracer ?? null;
    this.sampler = tracing?.sampler ?? null;
  }

  requestStarted(f: EchoRequestFields, temporary: boolean): StartedTrace {
    const sampler = this.sampler;
    if (this.tracer === null || sampler === null) return null;
    // Not sampled: what the wire needs (the trace id, flags 00), and nothing to end later.
    if (!sampler.draw()) return sampler.unsampledTrace();
    // A root (ROOT_CONTEXT: nothing upstream of a TUN packet carries a trace context), with the
    // drawn trace id and the draw's decision.
    sampler.startingSampled(true);
    const span = this.tracer.startSpan(
      "icmpfwd.echo_request",
      { kind: SpanKind.SERVER },
      ROOT_CONTEXT,
    );
    sampler.started();
    if (span.isRecording()) {
      // Formatting addresses costs; only sampled spans pay it.
      span.setAttributes({
        "network.type": f.family,
        "source.address": formatAddress(f.source),
        "destination.address": formatAddress(f.destination),
        "icmp.ident": f.ident,
        "icmp.sequence": f.sequence,
        "icmpfwd.temporary": temporary,
      });
    }
    return new TracedRequest(span);
  }

  decisionStarted(t: RequestTrace, session: DecidingSession): void {
    const r = t as TracedRequest;
    const sampler = this.sampler;
    if (this.tracer === null || sampler === null || !r.span.isRecording()) return;
    if (r.decide !== null) {
      // Re-dispatched: the first session's part ends here.
      r.decide.setAttribute("icmpfwd.redispatched", true);
      r.decide.end();
    }
    const link = session.streamLink as SpanContext | undefined;
    const links: Link[] = link !== undefined && isSpanContextValid(link) ? [{ context: link }] : [];
    sampler.startingSampled(false);
    r.decide = this.tracer.startSpan(
      "icmpfwd.decide",
      {
        kind: SpanKind.CLIENT,
        links,
        attributes: { "icmpfwd.session": session.sessionId, "icmpfwd.client": session.clientName },
      },
      trace.setSpan(ROOT_CONTEXT, r.span),
    );
    sampler.started();
  }

  requestEnded(
    t: StartedTrace,
    action: OutcomeAction,
    cause: OutcomeCause,
    session: DecidingSession | null,
    decisionMs: number,
  ): void {
    if (decisionMs >= 0 && this.decisions !== null && session !== null)
      this.decisions.record(session, action, decisionMs / 1000);
    if (t === null || !t.sampled) return;
    const r = t as TracedRequest;
    if (!r.span.isRecording()) return;
    const causeLabel = CAUSE_LABEL[cause];
    if (r.decide !== null) {
      r.decide.setAttributes({ "icmpfwd.verdict": action, "icmpfwd.cause": causeLabel });
      if (cause !== "verdict")
        r.decide.setStatus({ code: SpanStatusCode.ERROR, message: `no verdict: ${causeLabel}` });
      r.decide.end();
    }
    r.span.setAttribute("icmpfwd.verdict", action);
    r.span.setAttribute("icmpfwd.cause", causeLabel);
    if (session !== null) r.span.setAttribute("icmpfwd.session", session.sessionId);
    r.span.end();
    r.release();
  }

  /**
   * One `icmpfwd.synthetic_reply` span, a child of the request's (ended) `icmpfwd.echo_request`
   * span: the answer comes after the CONSUME verdict ended the request, in the same trace.
   */
  syntheticAnswered(t: RequestTrace, session: DecidingSession, answer: SyntheticAnswerTrace): void {
    const r = t as TracedRequest;
    const sampler = this.sampler;
    // The request's span has ended (only its context is left): its flags say it was sampled.
    const sampled = (r.span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
    if (this.tracer === null || sampler === null || !sampled) return;
    const attributes: Record<string, string | number> = {
      "icmpfwd.session": session.sessionId,
      "icmpfwd.client": session.clientName,
      "icmpfwd.synthetic.kind": SYNTHETIC_KIND_LABEL[answer.kind],
      "icmpfwd.synthetic.delay_ms": answer.delayMs,
    };
    if (answer.source !== null)
      attributes["icmpfwd.synthetic.source"] = formatAddress(answer.source);
    sampler.startingSampled(false);
    const span = this.tracer.startSpan(
      "icmpfwd.synthetic_reply",
      { kind: SpanKind.INTERNAL, attributes },
      trace.setSpan(ROOT_CONTEXT, r.span),
    );
    sampler.started();
    if (answer.problem !== null)
      span.setStatus({ code: SpanStatusCode.ERROR, message: answer.problem });
    span.end();
  }

  sessionEnded(session: DecidingSession): void {
    this.decisions?.sessionEnded(session);
  }
}
