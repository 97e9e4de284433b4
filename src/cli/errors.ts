/**
 * Every error a client subcommand ends with, as one line: the target, the gRPC status by name,
 * what the service said, and what to try. The hints live here and nowhere else.
 */
import { status as Status } from "@grpc/grpc-js";

/** What failed: which service, and what the user asked of it (for PERMISSION_DENIED). */
export interface CallContext {
  target: string;
  /** The command as typed, e.g. "route add". */
  action: string;
}

/** A failure before any call (unreadable file, flags that do not go together): one line, exit 1. */
export class ClientError extends Error {
  override readonly name = "ClientError";
  /** grpc_health_probe's code for it when `icmpfwd health` meets it (20: TLS credentials). */
  constructor(
    message: string,
    readonly healthCode: number = 1,
  ) {
    super(message);
  }
}

/** "UNAVAILABLE" for 14; `status N` for a code grpc-js does not know. */
export function statusName(code: number): string {
  const name = (Status as unknown as Record<number, string | undefined>)[code];
  return name ?? `status ${code}`;
}

const TARGET_HINT = "is `icmpfwd serve` running? check --target/ICMPFWD_TARGET";

/** One hint per status that has a useful one. */
const HINTS: Readonly<Record<string, string>> = {
  UNAVAILABLE: TARGET_HINT,
  DEADLINE_EXCEEDED: `no answer within --connect-timeout: ${TARGET_HINT}`,
  UNAUTHENTICATED:
    "give the service's token (--token/ICMPFWD_TOKEN) or a client certificate it trusts (--tls-cert/--tls-key)",
  UNIMPLEMENTED: "the service at the target is not an icmpfwd of this version",
  RESOURCE_EXHAUSTED: "the service is at one of its limits; try again later",
  INTERNAL: "the service's log has the details",
};

/** "connect ECONNREFUSED 127.0.0.1:1" out of grpc-js's "No connection established. Last error: …". */
function connectionCause(details: string): string | null {
  const m =
    /Last error: (?:Error: )?(.*?)(?: \(\d{4}-\d\d-\d\dT[^)]*\))?\.?(?: Resolution note:.*)?$/s.exec(
      details,
    );
  return m === null ? null : m[1].trim();
}

/**
 * Who the service says the caller is, out of its PERMISSION_DENIED text (auth.ts):
 * `identity "ops" may not …`, `uid 65534 may not …`.
 */
function principalIn(details: string): string | null {
  const m = /identity "([^"]*)"|\buid (\d+) may not\b/.exec(details);
  if (m === null) return null;
  return m[1] !== undefined ? m[1] : `uid:${m[2]}`;
}

/** One line (without the `icmpfwd: ` prefix) for an error a call ended with. */
export function describeCallError(e: unknown, ctx: CallContext): string {
  if (e instanceof ClientError) return e.message;
  const s = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof s.code !== "number") return e instanceof Error ? e.message : String(e);
  const name = statusName(s.code);
  const details = String(s.details ?? s.message ?? "").trim();
  if (name === "UNAVAILABLE") {
    const cause = connectionCause(details) ?? details;
    return `${ctx.target}: UNAVAILABLE: cannot reach the service (${cause}): ${TARGET_HINT}`;
  }
  if (name === "PERMISSION_DENIED") {
    const who = principalIn(details) ?? "this caller";
    return `${ctx.target}: PERMISSION_DENIED: authenticated as ${who} but not allowed to run \`icmpfwd ${ctx.action}\`; see --authz (${details})`;
  }
  const hint = HINTS[name];
  return `${ctx.target}: ${name}: ${details}${hint === undefined ? "" : `; ${hint}`}`;
}
