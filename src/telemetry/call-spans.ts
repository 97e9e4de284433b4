/**
 * One SERVER span per gRPC call the service takes, named and attributed as
 * @opentelemetry/instrumentation-grpc names its server spans (`grpc.<service>/<method>`,
 * rpc.system, rpc.service, rpc.method, rpc.grpc.status_code), started from the service's own
 * interceptor (service/call-telemetry.ts) instead of that instrumentation: no module hooks and
 * no global context manager. A W3C `traceparent` in the call's metadata is its parent.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { CallTelemetry, CallTrace } from "../service/call-telemetry.js";

type Header = (name: string) => string | undefined;

const HEADER_GETTER: TextMapGetter<Header> = {
  keys: () => [],
  get: (header, key) => header(key),
};

/**
 * gRPC codes a server reports as its own error (OpenTelemetry's semantic conventions for gRPC
 * server spans); the rest (NOT_FOUND, UNAUTHENTICATED, …) are the caller's and leave the status
 * unset.
 */
const SERVER_ERROR_CODES: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

export class OtelCallTelemetry implements CallTelemetry {
  private readonly propagator = new W3CTraceContextPropagator();

  constructor(private readonly tracer: Tracer) {}

  callStarted(path: string, header: Header): CallTrace {
    const parent = this.propagator.extract(ROOT_CONTEXT, header, HEADER_GETTER);
    const name = path.startsWith("/") ? path.slice(1) : path;
    const slash = name.lastIndexOf("/");
    const span = this.tracer.startSpan(
      `grpc.${name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": "grpc",
          "rpc.service": name.slice(0, slash),
          "rpc.method": name.slice(slash + 1),
        },
      },
      parent,
    );
    const sc = span.spanContext();
    return {
      link: sc,
      ids:
        (sc.traceFlags & TraceFlags.SAMPLED) !== 0
          ? { traceId: sc.traceId, spanId: sc.spanId }
          : null,
      end(code: number, details: string): void {
        span.setAttribute("rpc.grpc.status_code", code);
        if (SERVER_ERROR_CODES.has(code))
          span.setStatus({ code: SpanStatusCode.ERROR, message: details });
        span.end();
      },
    };
  }
}
