import { type Logger, pino } from "pino";

export type { Logger };

/** JSON lines on stdout (pino), one object per event. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "icmpfwd" }, timestamp: pino.stdTimeFunctions.isoTime });
}
