/** Log lines: one JSON object per line, `level` a word (docs/cli-contract.md "Output"). */

export type LogLevel = "debug" | "info" | "warn" | "error";
/**
 * Fields use the contract's names: `target` on lines about one service, `session` (the
 * Welcome's session id) on lines about a session, `trace_id` on lines about a request.
 */
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

const json = (v: Record<string, unknown>): string =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));

/** A logger writing JSON lines to `write` (default stderr); debug lines only when `debug`. */
export function jsonLogger(o: { debug?: boolean; write?: (line: string) => void } = {}): Logger {
  const write = o.write ?? ((line: string) => process.stderr.write(line));
  return (level, msg, fields = {}) => {
    if (level === "debug" && o.debug !== true) return;
    write(`${json({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
}

/** One JSON line on stderr per message at info and above. */
export const stderrLogger: Logger = jsonLogger();
