import { context, trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

/** trace_id / span_id of the span active where the line is written. */
function traceIds(): Record<string, string> {
  const sc = trace.getSpan(context.active())?.spanContext();
  return sc === undefined ? {} : { trace_id: sc.traceId, span_id: sc.spanId };
}

/**
 * JSON lines on stdout (pino), one object per event. With `traceContext`, a line written
 * inside a span carries its ids (tracing on); without it no lookup is made.
 */
export function createLogger(
  level: string,
  o: { traceContext?: boolean; destination?: DestinationStream } = {},
): Logger {
  const options = {
    level,
    base: { service: "icmpfwd" },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(o.traceContext ? { mixin: traceIds } : {}),
  };
  return o.destination === undefined ? pino(options) : pino(options, o.destination);
}
