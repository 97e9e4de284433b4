/**
 * `icmpfwd health`: a grpc.health.v1 Check with grpc_health_probe's exit codes, so a probe
 * written for one works with the other: 0 SERVING, 1 bad arguments, 2 no connection, 3 the
 * RPC failed, 4 not SERVING, 20 a TLS file that does not load.
 */
import { Client, connectivityState, status as Status } from "@grpc/grpc-js";
import type { ServiceClient } from "./client.js";
import { type CallContext, ClientError, describeCallError } from "./errors.js";

export const HEALTH_EXIT = {
  serving: 0,
  badArguments: 1,
  connectionFailure: 2,
  rpcFailure: 3,
  notServing: 4,
  tlsCredentials: 20,
} as const;

export interface HealthResult {
  code: number;
  /** The status name when the check answered ("SERVING", "NOT_SERVING", …). */
  status: string | null;
  /** Why there is no status (one line, without the `icmpfwd: ` prefix). */
  error: string | null;
}

const STATUS_NAMES = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** HealthCheckResponse.status (field 1, an enum) by name. */
export function healthStatusName(b: Buffer): string {
  const v = b.length >= 2 && b[0] === 0x08 ? b[1] : 0;
  return STATUS_NAMES[v] ?? `status ${v}`;
}

/** HealthCheckRequest{service}: field 1, a string ("" is the whole server: no bytes). */
export function healthRequest(service: string): Buffer {
  const name = Buffer.from(service, "utf8");
  if (name.length === 0) return Buffer.alloc(0);
  if (name.length > 127) throw new ClientError("--service: at most 127 bytes");
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

/** Connects (up to the client's timeout), then asks; never throws. */
export async function checkHealth(
  c: ServiceClient,
  service: string,
  ctx: CallContext,
): Promise<HealthResult> {
  const fail = (code: number, e: unknown): HealthResult => ({
    code,
    status: null,
    error: describeCallError(e, ctx),
  });
  // The client's own channel: one connection, the same credentials.
  const raw = new Client(ctx.target, null as never, { channelOverride: c.client.getChannel() });
  try {
    const reply = await new Promise<Buffer>((resolve, reject) =>
      raw.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        healthRequest(service),
        c.metadata(),
        c.options(),
        (e, r) => (e ? reject(e) : resolve(r ?? Buffer.alloc(0))),
      ),
    );
    const status = healthStatusName(reply);
    return {
      code: status === "SERVING" ? HEALTH_EXIT.serving : HEALTH_EXIT.notServing,
      status,
      error: null,
    };
  } catch (e) {
    // No connection (refused, TLS handshake, timed out before one was up) or a failed RPC.
    const connected = raw.getChannel().getConnectivityState(false) === connectivityState.READY;
    const unavailable = (e as { code?: unknown }).code === Status.UNAVAILABLE;
    return fail(
      connected && !unavailable ? HEALTH_EXIT.rpcFailure : HEALTH_EXIT.connectionFailure,
      e,
    );
  }
}
