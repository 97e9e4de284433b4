/**
 * `--tracing console`: each finished span as one JSON line on stderr, so stdout keeps only the
 * log's lines (the SDK's ConsoleSpanExporter prints multi-line objects to stdout).
 */
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, hrTimeToMicroseconds } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";

/** The fields of one span line. */
export function spanLine(s: ReadableSpan): Record<string, unknown> {
  const sc = s.spanContext();
  return {
    span: s.name,
    trace_id: sc.traceId,
    span_id: sc.spanId,
    parent_span_id: s.parentSpanContext?.spanId ?? null,
    kind: SpanKind[s.kind],
    start_us: hrTimeToMicroseconds(s.startTime),
    duration_us: hrTimeToMicroseconds(s.duration),
    status: SpanStatusCode[s.status.code],
    ...(s.status.message === undefined ? {} : { status_message: s.status.message }),
    attributes: s.attributes,
    events: s.events.map((e) => ({ name: e.name, attributes: e.attributes ?? {} })),
  };
}

export class StderrSpanExporter implements SpanExporter {
  constructor(private readonly write: (line: string) => void = (l) => process.stderr.write(l)) {}

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    for (const s of spans) this.write(`${JSON.stringify(spanLine(s))}\n`);
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
}
