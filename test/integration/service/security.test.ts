/**
 * Security: bearer tokens (constant-time compare), TLS and mTLS from PEM files made here by
 * Debian's openssl, and per-identity authorization of modes, filters and the admin RPCs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/config.js";
import { EchoForwarderClient, Mode } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import type { AuthzFile } from "../../../src/service/index.js";
import { tempDir } from "../../helpers/netns.js";
import { type Harness, serviceTests, TestClient } from "./harness.js";

const t = serviceTests();
let h: Harness;
const TOKEN = "correct-horse-battery-staple";

function getStats(c: EchoForwarderClient, token?: string): Promise<ServiceError | null> {
  const md = new Metadata();
  if (token !== undefined) md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve) => c.getStats({}, md, (e) => resolve(e)));
}

/** Connects and says Hello; the call's status when it ends, or "welcome". */
async function helloOutcome(
  address: string,
  hello: Parameters<TestClient["hello"]>[0],
  o: ConstructorParameters<typeof TestClient>[1],
): Promise<{ code: number; details: string } | "welcome"> {
  const c = new TestClient(address, o);
  try {
    c.hello(hello);
    await c.until(() => c.welcome !== null || c.status !== null, "Welcome or status");
    return c.welcome !== null
      ? "welcome"
      : { code: c.status?.code ?? -1, details: c.status?.details ?? "" };
  } finally {
    c.close();
  }
}

describe("bearer token", () => {
  it("no token: UNAUTHENTICATED", async () => {
    h = await t.start({ security: { token: TOKEN } });
    const c = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    const e = await getStats(c);
    c.close();
    expect([e?.code, e?.details]).toEqual([
      16,
      "no credentials: send `authorization: Bearer TOKEN` or a client certificate",
    ]);
  });

  it("wrong token: UNAUTHENTICATED", async () => {
    h = await t.start({ security: { token: TOKEN } });
    const c = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    const e = await getStats(c, "correct-horse-battery-stapl3");
    c.close();
    expect([e?.code, e?.details]).toEqual([16, "the bearer token is not valid"]);
  });

  it("right token: the call succeeds", async () => {
    h = await t.start({ security: { token: TOKEN } });
    const c = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    expect(await getStats(c, TOKEN)).toBeNull();
    c.close();
    expect(await helloOutcome(h.service.address, {}, { token: TOKEN })).toBe("welcome");
  });

  it("no token on Connect: the stream ends UNAUTHENTICATED", async () => {
    h = await t.start({ security: { token: TOKEN } });
    const r = await helloOutcome(h.service.address, {}, {});
    expect(r).not.toBe("welcome");
    expect(r !== "welcome" && r.code).toBe(16);
  });

  it("a token over a plaintext non-loopback listener is refused at start-up", () => {
    expect(() => resolveConfig({ listen: "0.0.0.0:50051", token: TOKEN })).toThrow(
      /token \(--token, ICMPFWD_TOKEN\): a bearer token over a plaintext non-loopback listener is refused/,
    );
    expect(
      resolveConfig({ listen: "0.0.0.0:50051", token: TOKEN, insecureToken: true }).token,
    ).toBe(TOKEN);
    expect(resolveConfig({ listen: "127.0.0.1:50051", token: TOKEN }).token).toBe(TOKEN);
    expect(resolveConfig({ listen: "unix:/run/x.sock", token: TOKEN }).token).toBe(TOKEN);
  });
});

describe("authorization by identity", () => {
  const authz: AuthzFile = {
    tokens: { "observer-token-0123456789": "dashboard", "proxy-token-0123456789": "proxy" },
    identities: {
      dashboard: { modes: ["observe"] },
      proxy: { modes: ["decide", "admin"], destinationPrefixes: ["198.18.0.0/24"] },
    },
  };
  const filter = (dst: string[]) => ({
    family: 0,
    sourcePrefixes: [],
    destinationPrefixes: dst,
    temporaryOnly: false,
  });

  it("an identity not allowed to decide: PERMISSION_DENIED", async () => {
    h = await t.start({ security: { authz } });
    const r = await helloOutcome(h.service.address, {}, { token: "observer-token-0123456789" });
    expect(r).toEqual({ code: 7, details: 'identity "dashboard" may not use MODE_DECIDE' });
    expect(
      await helloOutcome(
        h.service.address,
        { mode: Mode.MODE_OBSERVE },
        { token: "observer-token-0123456789" },
      ),
    ).toBe("welcome");
  });

  it("an identity may claim only filters within its destination prefixes", async () => {
    h = await t.start({ security: { authz } });
    const token = "proxy-token-0123456789";
    expect(await helloOutcome(h.service.address, {}, { token })).toEqual({
      code: 7,
      details: 'identity "proxy" must claim filter.destination_prefixes within 198.18.0.0/24',
    });
    expect(
      await helloOutcome(h.service.address, { filter: filter(["198.18.1.0/24"]) }, { token }),
    ).toEqual({
      code: 7,
      details: 'identity "proxy" may not claim 198.18.1.0/24: allowed 198.18.0.0/24',
    });
    expect(
      await helloOutcome(h.service.address, { filter: filter(["198.18.0.128/25"]) }, { token }),
    ).toBe("welcome");
  });

  it("the admin RPCs need the admin right", async () => {
    h = await t.start({ security: { authz } });
    const c = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    const e = await getStats(c, "observer-token-0123456789");
    expect([e?.code, e?.details]).toEqual([7, 'identity "dashboard" may not use the admin RPCs']);
    expect(await getStats(c, "proxy-token-0123456789")).toBeNull();
    c.close();
  });
});

describe("TLS and mTLS", () => {
  let dir: string;
  const pem = (name: string) => readFileSync(join(dir, name));

  beforeAll(() => {
    dir = tempDir("icmpfwd-tls-");
    const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    const ca = (name: string) =>
      ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
      );
    ca("test-ca");
    ca("rogue-ca");
    // The server certificate names 127.0.0.1 and localhost.
    execFileSync(
      "sh",
      [
        "-c",
        `openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext &&
        openssl x509 -req -in server.csr -CA test-ca.pem -CAkey test-ca.key -CAcreateserial -days 1 -out server.pem -extfile san.ext 2>/dev/null`,
      ],
      { cwd: dir },
    );
    for (const [name, caName] of [
      ["proxy-1", "test-ca"],
      ["intruder", "rogue-ca"],
    ])
      execFileSync(
        "sh",
        [
          "-c",
          `openssl req -newkey rsa:2048 -nodes -subj /CN=${name} -keyout ${name}.key -out ${name}.csr 2>/dev/null &&
          openssl x509 -req -in ${name}.csr -CA ${caName}.pem -CAkey ${caName}.key -CAcreateserial -days 1 -out ${name}.pem 2>/dev/null`,
        ],
        { cwd: dir },
      );
  });

  const tls = (clientCa: boolean) => ({
    cert: pem("server.pem"),
    key: pem("server.key"),
    clientCa: clientCa ? pem("test-ca.pem") : undefined,
  });

  it("TLS: a client trusting the CA gets through; a plaintext client does not", async () => {
    h = await t.start({ security: { tls: tls(false) } });
    const good = new EchoForwarderClient(
      h.service.address,
      credentials.createSsl(pem("test-ca.pem")),
    );
    expect(await getStats(good)).toBeNull();
    good.close();
    const plain = new EchoForwarderClient(h.service.address, credentials.createInsecure());
    expect((await getStats(plain))?.code).toBe(14);
    plain.close();
  });

  it("mTLS: the certificate's CN is the identity", async () => {
    h = await t.start({
      security: {
        tls: tls(true),
        authz: { tokens: {}, identities: { "proxy-1": { modes: ["observe"] } } },
      },
    });
    const creds = credentials.createSsl(pem("test-ca.pem"), pem("proxy-1.key"), pem("proxy-1.pem"));
    const r = await helloOutcome(h.service.address, {}, { credentials: creds });
    expect(r).toEqual({ code: 7, details: 'identity "proxy-1" may not use MODE_DECIDE' });
    const c = await TestClient.connect(
      h.service.address,
      { mode: Mode.MODE_OBSERVE },
      { credentials: creds },
    );
    expect(h.service.listSessions().sessions[0].identity).toBe("proxy-1");
    c.close();
  });

  it("mTLS with an untrusted certificate: the handshake fails (UNAVAILABLE)", async () => {
    h = await t.start({ security: { tls: tls(true) } });
    const creds = credentials.createSsl(
      pem("test-ca.pem"),
      pem("intruder.key"),
      pem("intruder.pem"),
    );
    const c = new EchoForwarderClient(h.service.address, creds);
    expect((await getStats(c))?.code).toBe(14);
    c.close();
    const none = new EchoForwarderClient(
      h.service.address,
      credentials.createSsl(pem("test-ca.pem")),
    );
    expect((await getStats(none))?.code).toBe(14);
    none.close();
  });
});
