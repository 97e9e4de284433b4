/** Every error a client command ends with: one line, the target, the status by name, a hint. */
import { describe, expect, it } from "vitest";
import { ClientError, describeCallError, statusName } from "../../../src/cli/errors.js";

const at = { target: "127.0.0.1:50051", action: "route add" };
const grpcError = (code: number, details: string) =>
  Object.assign(new Error(`${code} X: ${details}`), { code, details });

describe("describeCallError", () => {
  it("UNAVAILABLE: the cause out of grpc-js's text, the target and where to look", () => {
    const e = grpcError(
      14,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051 (2026-12-07T03:14:15.926Z). Resolution note: ",
    );
    expect(describeCallError(e, at)).toBe(
      "127.0.0.1:50051: UNAVAILABLE: cannot reach the service (connect ECONNREFUSED 127.0.0.1:50051): is `icmpfwd serve` running? check --target/ICMPFWD_TARGET",
    );
  });

  it("UNAUTHENTICATED: the token and certificate hint", () => {
    expect(describeCallError(grpcError(16, "the bearer token is not valid"), at)).toBe(
      "127.0.0.1:50051: UNAUTHENTICATED: the bearer token is not valid; give the service's token (--token/ICMPFWD_TOKEN) or a client certificate it trusts (--tls-cert/--tls-key)",
    );
  });

  it("PERMISSION_DENIED: who the service took the caller for, and what was refused", () => {
    expect(
      describeCallError(grpcError(7, 'identity "viewer" may not use the admin RPCs'), at),
    ).toBe(
      '127.0.0.1:50051: PERMISSION_DENIED: authenticated as viewer but not allowed to run `icmpfwd route add`; see --authz (identity "viewer" may not use the admin RPCs)',
    );
    expect(
      describeCallError(grpcError(7, "uid 65534 may not call icmpfwd: only root may"), at),
    ).toMatch(/^127\.0\.0\.1:50051: PERMISSION_DENIED: authenticated as uid:65534 but not/);
  });

  it("any other status: its name and the service's words, on one line", () => {
    const e = grpcError(3, "address: 198.18.5.2 is not an address of NIC 1");
    expect(describeCallError(e, at)).toBe(
      "127.0.0.1:50051: INVALID_ARGUMENT: address: 198.18.5.2 is not an address of NIC 1",
    );
    expect(describeCallError(grpcError(4, "Deadline exceeded after 5.001s"), at)).toBe(
      "127.0.0.1:50051: DEADLINE_EXCEEDED: Deadline exceeded after 5.001s; no answer within --connect-timeout: is `icmpfwd serve` running? check --target/ICMPFWD_TARGET",
    );
  });

  it("status names, never numbers", () => {
    expect([0, 1, 5, 7, 14, 16].map(statusName)).toEqual([
      "OK",
      "CANCELLED",
      "NOT_FOUND",
      "PERMISSION_DENIED",
      "UNAVAILABLE",
      "UNAUTHENTICATED",
    ]);
    expect(statusName(99)).toBe("status 99");
  });

  it("a ClientError is its own message", () => {
    expect(describeCallError(new ClientError("--tls-cert and --tls-key go together"), at)).toBe(
      "--tls-cert and --tls-key go together",
    );
  });
});
