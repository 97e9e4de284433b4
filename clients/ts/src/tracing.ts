/**
 * The policy's decision span: a child of the request's `traceparent` (the service's
 * `icmpfwd.decide` span), so one trace runs from the TUN through this client and back. Spans are
 * made only when an OpenTelemetry SDK is registered in this process (the API alone is a no-op).
 */
import {
  type Context,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TraceFlags,
  trace,
} from "@opentelemetry/api";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The remote parent a W3C traceparent names, or null when it names none. */
export function parentContext(traceparent: string): Context | null {
  const m = TRACEPARENT.exec(traceparent);
  if (m === null) return null;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1],
    spanId: m[2],
    traceFlags: Number.parseInt(m[3], 16) as TraceFlags,
    isRemote: true,
  });
}

/** A started decision span and the context to run the handler in (its own spans nest in it). */
export interface DecisionSpan {
  span: Span;
  context: Context;
}

/** Starts `icmpfwd.policy.decide` under the request's traceparent; null when nothing records. */
export function startDecisionSpan(
  traceparent: string,
  attributes: { client: string; requestId: bigint; sequence: number },
): DecisionSpan | null {
  const parent = parentContext(traceparent);
  if (parent === null) return null;
  const span = trace.getTracer("@icmpfwd/client").startSpan(
    "icmpfwd.policy.decide",
    {
      kind: SpanKind.SERVER,
      attributes: {
        "icmpfwd.client": attributes.client,
        "icmpfwd.request_id": attributes.requestId.toString(),
        "icmp.sequence": attributes.sequence,
      },
    },
    parent,
  );
  // No SDK, or the service's sampler said no: nothing to record, nothing to end later.
  if (!span.isRecording()) return null;
  return { span, context: trace.setSpan(parent, span) };
}

/** Ends the span with the verdict (or the handler's error). */
export function endDecisionSpan(d: DecisionSpan, verdict: string, error?: unknown): void {
  d.span.setAttribute("icmpfwd.verdict", verdict);
  if (error !== undefined)
    d.span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  d.span.end();
}

/** Runs `fn` with `d`'s context active (or as is without a span). */
export function withDecisionSpan<T>(d: DecisionSpan | null, fn: () => T): T {
  return d === null ? fn() : context.with(d.context, fn);
}
