/**
 * TLS in the TypeScript client and CLI: the CA to trust, mTLS, and the name checked in the
 * server certificate (`--tls-server-name`; for a `dns:///` element, the name rather than the
 * resolved address). Certificates from Debian's openssl; a server certificate that names only
 * policy.test, served on 127.0.0.1.
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ServerCredentials } from "@grpc/grpc-js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect, type PolicyClient } from "../../../clients/ts/src/index.js";
import { sleep, tempDir, waitFor } from "../../helpers/netns.js";
import { FakeService } from "./ts-fake-service.js";

const CLI = fileURLToPath(new URL("../../../clients/ts/src/cli.ts", import.meta.url));

let dir = "";
const pem = (name: string): Buffer => readFileSync(join(dir, name));
const onLog = (): void => {};

beforeAll(() => {
  dir = tempDir("icmpfwd-client-tls-");
  const sh = (cmd: string): void => {
    execFileSync("sh", ["-c", cmd], { cwd: dir, stdio: "pipe" });
  };
  sh(
    "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem",
  );
  for (const [name, san] of [
    ["server", "subjectAltName=DNS:policy.test"],
    ["client", "subjectAltName=DNS:client"],
  ]) {
    sh(
      `openssl req -newkey rsa:2048 -nodes -subj /CN=${name} -keyout ${name}.key -out ${name}.csr && printf '${san}\\n' > ${name}.ext && openssl x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out ${name}.pem -extfile ${name}.ext`,
    );
  }
});

let fakes: FakeService[] = [];
let client: PolicyClient | null = null;
afterEach(async () => {
  await client?.drain().catch(() => {});
  client = null;
  for (const f of fakes) f.stop();
  fakes = [];
});

/** A TLS service on 127.0.0.1; with `mutual`, it asks for a client certificate from the CA. */
async function tlsFake(mutual: boolean): Promise<FakeService> {
  const f = new FakeService();
  await f.start(
    "127.0.0.1",
    0,
    ServerCredentials.createSsl(
      mutual ? pem("ca.pem") : null,
      [{ cert_chain: pem("server.pem"), private_key: pem("server.key") }],
      mutual,
    ),
  );
  fakes.push(f);
  return f;
}

describe("TLS in @icmpfwd/client", () => {
  it("checks serverName in the certificate: the right name connects, the address alone does not", async () => {
    const f = await tlsFake(false);
    client = connect({
      target: f.address,
      tls: { ca: pem("ca.pem"), serverName: "policy.test" },
      onLog,
      handler: () => "reply",
    });
    await waitFor(() => client?.connected, { what: "connected over TLS" });
    await client.drain();
    const streams = f.calls.length;

    client = connect({
      target: f.address,
      tls: { ca: pem("ca.pem") },
      backoff: { initialMs: 10, maxMs: 20 },
      onLog,
      handler: () => "reply",
    });
    await sleep(300);
    expect(client.stats.sessions).toBe(0);
    // The handshake fails (the certificate does not name 127.0.0.1): no stream ever opens.
    expect(f.calls).toHaveLength(streams);
  });

  it("a dns:/// element checks the name, not the resolved address", async () => {
    const f = await tlsFake(false);
    client = connect({
      target: `dns:///policy.test:${f.port}`,
      resolver: async () => ["127.0.0.1"],
      tls: { ca: pem("ca.pem") },
      onLog,
      handler: () => "reply",
    });
    await waitFor(() => client?.connected, { what: "connected over TLS by name" });
    expect(client.services().map((s) => s.target)).toEqual([`127.0.0.1:${f.port}`]);
  });
});

describe("TLS flags of icmpfwd-policy", { timeout: 90_000 }, () => {
  it("--tls-ca, --tls-cert, --tls-key and --tls-server-name speak mTLS", async () => {
    const f = await tlsFake(true);
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        CLI,
        "reply-all",
        "--target",
        f.address,
        "--tls-ca",
        join(dir, "ca.pem"),
        "--tls-cert",
        join(dir, "client.pem"),
        "--tls-key",
        join(dir, "client.key"),
        "--tls-server-name",
        "policy.test",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let err = "";
    let out = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    try {
      await waitFor(() => err.includes('"msg":"connected"') || child.exitCode !== null, {
        what: "connected over mTLS",
        timeoutMs: 60_000,
      });
      expect(err).toContain('"msg":"connected"');
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    expect(out).toContain("sessions=1");
  });
});
