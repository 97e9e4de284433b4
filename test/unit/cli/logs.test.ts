/** Log lines: level words in JSON, pretty only where asked or on a terminal; spans one line each. */
import { Writable } from "node:stream";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { StderrSpanExporter } from "../../../src/telemetry/console-span-exporter.js";
import { createLogger, isPretty } from "../../../src/telemetry/logger.js";

function sink(): { stream: Writable; out: string[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  return { stream, out };
}

describe("logs", () => {
  it("JSON lines carry the level as a word", () => {
    const { stream, out } = sink();
    const log = createLogger("debug", { destination: stream });
    log.info("a");
    log.warn("b");
    log.debug("c");
    const levels = out.map((l) => (JSON.parse(l) as { level: unknown }).level);
    expect(levels).toEqual(["info", "warn", "debug"]);
  });

  it("--log-format auto is pretty on a terminal only; pretty and json are what they say", () => {
    expect(
      [
        ["auto", true],
        ["auto", false],
        ["pretty", false],
        ["json", true],
      ].map(([f, tty]) => isPretty(f as "auto" | "pretty" | "json", tty as boolean)),
    ).toEqual([true, false, true, false]);
  });
});

describe("--tracing console", () => {
  it("each span is one JSON line on the exporter's stream, kinds and statuses by name", async () => {
    const lines: string[] = [];
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(new StderrSpanExporter((l) => lines.push(l)))],
    });
    const span = provider
      .getTracer("t")
      .startSpan("icmpfwd.request", { kind: SpanKind.SERVER, attributes: { "icmpfwd.seq": 3 } });
    span.setStatus({ code: SpanStatusCode.ERROR, message: "timeout" });
    span.end();
    await provider.forceFlush();
    expect(lines).toHaveLength(1);
    expect(lines[0].endsWith("\n")).toBe(true);
    expect(lines[0].indexOf("\n")).toBe(lines[0].length - 1);
    expect(JSON.parse(lines[0])).toMatchObject({
      span: "icmpfwd.request",
      kind: "SERVER",
      status: "ERROR",
      status_message: "timeout",
      attributes: { "icmpfwd.seq": 3 },
      parent_span_id: null,
    });
    await provider.shutdown();
  });
});
