/** What the client commands print: enum names, --json one object per session, health bytes. */
import { describe, expect, it } from "vitest";
import { modeName, sessionsJson, sessionsTable } from "../../../src/cli/client.js";
import { HEALTH_EXIT, healthRequest, healthStatusName } from "../../../src/cli/health.js";
import { Family, Mode, type Session } from "../../../src/gen/icmpfwd/v1/forwarder.js";

const session = (over: Partial<Session>): Session => ({
  sessionId: "0123456789abcdef",
  clientName: "c",
  mode: Mode.MODE_DECIDE,
  filter: undefined,
  maxInFlight: 1024,
  inFlight: 0,
  decided: 0n,
  rejections: 0n,
  dropped: 0n,
  connectedAt: undefined,
  peer: "unix:",
  identity: "local",
  draining: false,
  ...over,
});

describe("sessions", () => {
  it("--json: one object per session, family and mode by name", () => {
    const filter = {
      family: Family.FAMILY_IPV6,
      sourcePrefixes: [],
      destinationPrefixes: ["fd00:1::/64"],
      temporaryOnly: false,
    };
    const out = sessionsJson([session({ filter }), session({ mode: Mode.MODE_OBSERVE })]);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({
      mode: "decide",
      filter: { family: "ipv6", destinationPrefixes: ["fd00:1::/64"] },
    });
    expect(out[1]).toMatchObject({ mode: "observe", filter: null });
    expect(JSON.stringify(out[0])).not.toContain('"family":2');
  });

  it("the table names modes and families, never numbers", () => {
    const filter = {
      family: Family.FAMILY_IPV4,
      sourcePrefixes: [],
      destinationPrefixes: [],
      temporaryOnly: false,
    };
    expect(sessionsTable([session({ filter })]).split("\n")[1]).toMatch(
      /^01234567 +c +decide +ipv4 +0\/1024 /,
    );
    expect(modeName(Mode.MODE_UNSPECIFIED)).toBe("unspecified");
  });
});

describe("health", () => {
  it("grpc_health_probe's exit codes", () => {
    expect(HEALTH_EXIT).toEqual({
      serving: 0,
      badArguments: 1,
      connectionFailure: 2,
      rpcFailure: 3,
      notServing: 4,
      tlsCredentials: 20,
    });
  });

  it("HealthCheckRequest and HealthCheckResponse on the wire", () => {
    expect(healthRequest("")).toEqual(Buffer.alloc(0));
    expect(healthRequest("a.B")).toEqual(Buffer.from([0x0a, 3, 0x61, 0x2e, 0x42]));
    expect(healthStatusName(Buffer.from([0x08, 1]))).toBe("SERVING");
    expect(healthStatusName(Buffer.from([0x08, 2]))).toBe("NOT_SERVING");
    expect(healthStatusName(Buffer.alloc(0))).toBe("UNKNOWN");
  });
});
