/**
 * What the service tells its audit log: who opened and closed sessions, who changed the
 * network or the configuration and from what to what, who was refused, and which connections
 * were cut. The service only calls these hooks; the daemon writes them (src/daemon/audit.ts).
 */

import type { TraceIds } from "./call-telemetry.js";

/** Who made a call: the identity it was admitted with, and where it came from. */
export interface Caller {
  /** `uid:0`, `token`, a token's name, a certificate's CN, `local` (unix socket). */
  identity: string;
  /** `127.0.0.1:40312`, `unix`, … */
  peer: string;
  /** The call's trace when tracing sampled it (the log line carries its ids). */
  trace?: TraceIds;
}

/** `c` with its call's trace ids, when tracing sampled the call (`ids` not null). */
export function withTrace(c: Caller, ids: TraceIds | null): Caller {
  return ids === null ? c : { ...c, trace: ids };
}

export interface SessionRecord extends Caller {
  sessionId: string;
  clientName: string;
  mode: "decide" | "observe";
}

export interface AuditLog {
  sessionOpened(s: SessionRecord): void;
  /** `reason`: how it ended (the client ended it, a status the server sent). */
  sessionClosed(s: SessionRecord, reason: string): void;
  /** An admin call that changed something: `what`, and the state before and after. */
  adminChange(who: Caller, what: string, before: unknown, after: unknown): void;
  /** A call refused for its credentials or its rights (UNAUTHENTICATED, PERMISSION_DENIED). */
  refused(peer: string, method: string, status: string, reason: string): void;
  /** A connection or session the server cut (overload, a missing Hello, GOAWAY). */
  disconnected(who: Caller, reason: string): void;
}

export const NO_AUDIT: AuditLog = {
  sessionOpened: () => {},
  sessionClosed: () => {},
  adminChange: () => {},
  refused: () => {},
  disconnected: () => {},
};
