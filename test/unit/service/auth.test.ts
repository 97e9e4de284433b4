/** Callers without credentials, told apart by the uid owning their loopback socket (auth.ts). */
import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { type Accounts, Authenticator } from "../../../src/service/auth.js";
import type { ServiceError } from "../../../src/service/errors.js";

const SERVICE_UID = 1000;
/** uid 0 root, 1000 the service's user, 2000 in group "policy", 3000 in nothing. */
const accounts: Accounts = {
  peerUid: (c) => (c.remotePort === undefined ? null : c.remotePort),
  namesOf: (uid) =>
    uid === 2000 ? { user: "alice", groups: ["alice", "policy"] } : { user: null, groups: [] },
  serviceUid: () => SERVICE_UID,
};
/** A loopback connection whose client socket the fake table says `uid` owns. */
const from = (uid: number) => ({
  remoteAddress: "127.0.0.1",
  remotePort: uid,
  localAddress: "127.0.0.1",
  localPort: 50051,
});
const anonymous = new Metadata();
const error = (r: unknown): ServiceError => r as ServiceError;

describe("with no credentials configured", () => {
  const auth = new Authenticator({}, accounts);

  it("root may do everything", () => {
    expect(auth.authenticate(anonymous, undefined, from(0))).toMatchObject({ identity: "uid:0" });
  });

  it("the service's own user may do everything", () => {
    const p = auth.authenticate(anonymous, undefined, from(SERVICE_UID));
    expect(p).toMatchObject({ identity: "uid:1000" });
  });

  it("any other local user is refused with PERMISSION_DENIED naming its uid", () => {
    const e = error(auth.authenticate(anonymous, undefined, from(3000)));
    expect(e.kind).toBe("permissionDenied");
    expect(e.message).toMatch(/^uid 3000 may not call icmpfwd/);
  });

  it("a caller whose socket is not in the table (not on this host) is UNAUTHENTICATED", () => {
    const e = error(
      auth.authenticate(anonymous, undefined, { remoteAddress: "198.18.3.1", localAddress: "x" }),
    );
    expect(e.kind).toBe("unauthenticated");
  });

  it("a unix-socket caller (no remote address: the socket's mode admits only root and the service's user) may do everything", () => {
    expect(auth.authenticate(anonymous, undefined, {})).toMatchObject({ identity: "local" });
  });
});

describe("with an authorization file naming local accounts", () => {
  const auth = new Authenticator(
    {
      authz: {
        tokens: {},
        identities: {
          "group:policy": { modes: ["decide"] },
          "uid:2000": { modes: ["observe"], destinationPrefixes: ["198.18.0.0/24"] },
        },
      },
    },
    accounts,
  );

  it("a user's uid and group grants add up", () => {
    const p = auth.authenticate(anonymous, undefined, from(2000));
    if ("kind" in p) throw new Error(p.message);
    expect(p.identity).toBe("uid:2000,group:policy");
    expect([...p.grant.modes].sort()).toEqual(["decide", "observe"]);
    // One grant without prefixes: none are required.
    expect(p.grant.destinationPrefixes).toBeNull();
  });

  it("a user with no grant is asked for credentials (UNAUTHENTICATED), root included", () => {
    expect(error(auth.authenticate(anonymous, undefined, from(3000))).kind).toBe("unauthenticated");
    expect(error(auth.authenticate(anonymous, undefined, from(0))).kind).toBe("unauthenticated");
  });
});

describe("--allow-unauthenticated", () => {
  it("lets anyone without credentials do everything", () => {
    const auth = new Authenticator({ allowUnauthenticated: true }, accounts);
    expect(auth.authenticate(anonymous, undefined, from(3000))).toMatchObject({ identity: "" });
  });
});
