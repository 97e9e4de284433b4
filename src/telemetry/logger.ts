import { createRequire } from "node:module";
import { context, trace } from "@opentelemetry/api";
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export type { Logger };

/** `--log-format`: JSON lines, one readable line per event, or pretty on a terminal. */
export type LogFormat = "auto" | "pretty" | "json";

/** trace_id / span_id of the span active where the line is written. */
function traceIds(): Record<string, string> {
  const sc = trace.getSpan(context.active())?.spanContext();
  return sc === undefined ? {} : { trace_id: sc.traceId, span_id: sc.spanId };
}

/** Whether `format` comes out pretty when written to stdout. */
export function isPretty(format: LogFormat, stdoutIsTty: boolean): boolean {
  return format === "pretty" || (format === "auto" && stdoutIsTty);
}

/**
 * pino-pretty, loaded only when a terminal (or --log-format pretty) asks for it: one line per
 * event, level as a word, written synchronously to stdout so nothing is lost at exit.
 */
function prettyStdout(): DestinationStream {
  const require = createRequire(import.meta.url);
  const pretty = require("pino-pretty") as (o: Record<string, unknown>) => DestinationStream;
  return pretty({
    destination: 1,
    sync: true,
    singleLine: true,
    translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l",
    ignore: "service,pid,hostname",
  });
}

/**
 * Log lines on stdout (pino), one per event: JSON objects whose `level` is a word ("info"),
 * or, pretty, one readable line. With `traceContext`, a line written inside a span carries its
 * ids (tracing on); without it no lookup is made.
 */
export function createLogger(
  level: string,
  o: { traceContext?: boolean; destination?: DestinationStream; format?: LogFormat } = {},
): Logger {
  const pretty =
    o.destination === undefined && isPretty(o.format ?? "json", process.stdout.isTTY === true);
  const options: LoggerOptions = {
    level,
    base: { service: "icmpfwd" },
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads the numeric level; JSON consumers get the word.
    ...(pretty ? {} : { formatters: { level: (label: string) => ({ level: label }) } }),
    ...(o.traceContext ? { mixin: traceIds } : {}),
  };
  if (pretty) return pino(options, prettyStdout());
  return o.destination === undefined ? pino(options) : pino(options, o.destination);
}
