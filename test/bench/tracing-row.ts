/**
 * One tracing row of the service bench, in a process of its own (tracing-rounds.ts starts it):
 *   tracing-row.ts off|RATIO COUNT SECONDS
 * The decision path at 1 stream × batch 16 (service.ts's serviceRow), with tracing set up as
 * `icmpfwd serve --tracing … --trace-sample-ratio RATIO` sets it up — the trace SDK, its batch
 * span processor, the request hooks and the gRPC calls' spans — except that the spans go to an
 * exporter that drops them. `off` loads none of it. Prints the row as one JSON line on stdout.
 */
import { pathToFileURL } from "node:url";
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { BenchTracing } from "./service.js";

/** Spans to nowhere: what tracing costs the service, without an exporter's network time. */
class DiscardingExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {}
}

const DIST = new URL("../../dist/", import.meta.url);
const load = (path: string) => import(pathToFileURL(new URL(path, DIST).pathname).href);

/** The daemon's tracing (telemetry/tracing.ts) with its default settings at `ratio`. */
async function daemonTracing(ratio: number): Promise<BenchTracing> {
  const { startTracingTo } = (await load(
    "telemetry/tracing.js",
  )) as typeof import("../../src/telemetry/tracing.js");
  const { telemetrySettings } = (await load(
    "telemetry/settings.js",
  )) as typeof import("../../src/telemetry/settings.js");
  const { OtelRequestTelemetry } = (await load(
    "telemetry/request-spans.js",
  )) as typeof import("../../src/telemetry/request-spans.js");
  const { resourceFromAttributes } = await import("@opentelemetry/resources");
  const settings = telemetrySettings(
    { metricsListen: "off", metricsMaxSessions: 100, tracing: "console", traceSampleRatio: ratio },
    {},
  );
  const traced = startTracingTo(
    [new DiscardingExporter()],
    settings,
    resourceFromAttributes({ "service.name": "icmpfwd-bench" }),
    "bench",
  );
  return {
    telemetry: new OtelRequestTelemetry(traced.requests, null),
    calls: traced.calls,
    provider: traced.provider,
  };
}

const [mode, count, seconds] = process.argv.slice(2);
const tracing = mode === "off" ? null : await daemonTracing(Number(mode));
const { loadBuilt, serviceRow } = await import("./service.js");
const row = await serviceRow(
  await loadBuilt(),
  1,
  16,
  null,
  { count: Number(count), seconds: Number(seconds) },
  tracing,
);
console.log(JSON.stringify(row));
process.exit(0);
