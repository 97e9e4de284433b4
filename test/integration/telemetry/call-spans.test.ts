/**
 * The gRPC calls' spans (service/call-telemetry.ts, telemetry/call-spans.ts), from the service on
 * a real loopback socket into an in-memory exporter: one SERVER span per call, named and
 * attributed as OpenTelemetry's gRPC instrumentation names them, a caller's traceparent as its
 * parent, refusals included, and no context manager needed.
 */
import { credentials, Metadata } from "@grpc/grpc-js";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { pinoAudit } from "../../../src/daemon/audit.js";
import {
  EchoForwarderClient,
  GetStatsRequest,
  type GetStatsResponse,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { SpanRecorder } from "../../helpers/span-recorder.js";
import { serviceTests } from "../service/harness.js";

const t = serviceTests();
const recorder = new SpanRecorder();
afterEach(() => recorder.reset());

const TOKEN = "call-spans-token";
const GET_STATS = "grpc.icmpfwd.v1.EchoForwarder/GetStats";
const CONNECT = "grpc.icmpfwd.v1.EchoForwarder/Connect";

/** GetStats with `metadata`; resolves with the status code (0: OK). */
function getStats(address: string, metadata: Metadata): Promise<number> {
  const client = new EchoForwarderClient(address, credentials.createInsecure());
  return new Promise((resolve) => {
    client.getStats(
      GetStatsRequest.fromPartial({}),
      metadata,
      (e: { code?: number } | null, _r?: GetStatsResponse) => {
        client.close();
        resolve(e?.code ?? 0);
      },
    );
  });
}

function withToken(traceparent?: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${TOKEN}`);
  if (traceparent !== undefined) md.set("traceparent", traceparent);
  return md;
}

async function started() {
  const telemetry = recorder.tracing();
  return t.start({ telemetry, calls: recorder.calls(), security: { token: TOKEN } });
}

describe("gRPC call spans", () => {
  it("each call is one SERVER span named grpc.<service>/<method> with rpc.* attributes and its status code", async () => {
    const h = await started();
    expect(await getStats(h.service.address, withToken())).toBe(0);
    const [span] = recorder.named(GET_STATS);
    expect(recorder.named(GET_STATS)).toHaveLength(1);
    expect(span.kind).toBe(1); // SpanKind.SERVER
    expect(span.attributes).toEqual({
      "rpc.system": "grpc",
      "rpc.service": "icmpfwd.v1.EchoForwarder",
      "rpc.method": "GetStats",
      "rpc.grpc.status_code": 0,
    });
    expect(span.status.code).toBe(0); // UNSET
    expect(span.parentSpanContext).toBeUndefined();
  });

  it("a traceparent in the call's metadata makes the span its child", async () => {
    const h = await started();
    const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    expect(await getStats(h.service.address, withToken(parent))).toBe(0);
    const [span] = recorder.named(GET_STATS);
    expect(span.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(span.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
  });

  it("a call refused for its credentials is traced with UNAUTHENTICATED, the caller's error: status unset", async () => {
    const h = await started();
    expect(await getStats(h.service.address, new Metadata())).toBe(16);
    const [span] = recorder.named(GET_STATS);
    expect(span.attributes["rpc.grpc.status_code"]).toBe(16);
    expect(span.status.code).toBe(0);
  });

  it("the audit lines of a traced Connect call (session opened, closed) carry its trace_id and span_id", async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: "info" },
      {
        write: (l: string) => {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        },
      },
    );
    const telemetry = recorder.tracing();
    await t.start({
      telemetry,
      calls: recorder.calls(),
      security: { token: TOKEN },
      audit: pinoAudit(log),
    });
    const c = await t.connect({ clientName: "audited" }, { token: TOKEN });
    c.close();
    await c.until(() => recorder.named(CONNECT).length === 1, "the Connect span");
    const connect = recorder.named(CONNECT)[0].spanContext();
    await c.until(() => lines.some((l) => l.msg === "session closed"), "session closed");
    for (const msg of ["session opened", "session closed"])
      expect(lines.find((l) => l.msg === msg)).toMatchObject({
        clientName: "audited",
        trace_id: connect.traceId,
        span_id: connect.spanId,
      });
  });
});
