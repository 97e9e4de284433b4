/**
 * The audit log as pino lines: sessions and admin changes at info, refusals and forced
 * disconnects at warn. Refusals are rate-limited (a client retrying bad credentials must not
 * flood the log): at most `burst` lines per `windowMs`, then one line with the count of those
 * suppressed.
 */
import type { AuditLog, Caller } from "../service/audit.js";
import type { Logger } from "../telemetry/logger.js";

export function pinoAudit(log: Logger, burst = 20, windowMs = 10_000): AuditLog {
  let windowStart = 0;
  let inWindow = 0;
  let suppressed = 0;
  const audit = { audit: true };
  return {
    sessionOpened: (s) => log.info({ ...audit, ...fields(s) }, "session opened"),
    sessionClosed: (s, reason) => log.info({ ...audit, ...fields(s), reason }, "session closed"),
    adminChange: (who, what, before, after) =>
      log.info({ ...audit, ...fields(who), what, before, after }, "admin change"),
    refused(peer, method, status, reason) {
      const now = Date.now();
      if (now - windowStart >= windowMs) {
        if (suppressed > 0)
          log.warn({ ...audit, suppressed, windowMs }, "refused calls not logged (rate limit)");
        windowStart = now;
        inWindow = 0;
        suppressed = 0;
      }
      if (inWindow >= burst) {
        suppressed++;
        return;
      }
      inWindow++;
      log.warn({ ...audit, peer, method, status, reason }, "call refused");
    },
    disconnected: (who, reason) => log.warn({ ...audit, ...fields(who), reason }, "disconnected"),
  };
}

/** A caller's fields as a line carries them: a sampled call's ids as trace_id and span_id. */
function fields<C extends Caller>(
  c: C,
): Omit<C, "trace"> & { trace_id?: string; span_id?: string } {
  const { trace, ...rest } = c;
  return trace === undefined ? rest : { ...rest, trace_id: trace.traceId, span_id: trace.spanId };
}
