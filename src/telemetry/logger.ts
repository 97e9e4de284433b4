import { createRequire } from "node:module";
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export type { Logger };

/** `--log-format`: JSON lines, one readable line per event, or pretty on a terminal. */
export type LogFormat = "auto" | "pretty" | "json";

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
 * or, pretty, one readable line. The audit lines of a traced call carry its trace_id and
 * span_id (daemon/audit.ts).
 */
export function createLogger(
  level: string,
  o: { destination?: DestinationStream; format?: LogFormat } = {},
): Logger {
  const pretty =
    o.destination === undefined && isPretty(o.format ?? "json", process.stdout.isTTY === true);
  const options: LoggerOptions = {
    level,
    base: { service: "icmpfwd" },
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads the numeric level; JSON consumers get the word.
    ...(pretty ? {} : { formatters: { level: (label: string) => ({ level: label }) } }),
  };
  if (pretty) return pino(options, prettyStdout());
  return o.destination === undefined ? pino(options) : pino(options, o.destination);
}
