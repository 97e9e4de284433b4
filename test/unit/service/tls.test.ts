/**
 * The in-memory certificate provider behind the server's TLS credentials: what its listeners
 * hear and when, and the check a rotation makes before it applies anything.
 */
import nodeTls from "node:tls";
import { ServerCredentials } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  checkTls,
  PemCertificateProvider,
  rotateTls,
  serverCredentials,
} from "../../../src/service/tls.js";

const files = (n: number, ca?: string) => ({
  cert: Buffer.from(`cert ${n}`),
  key: Buffer.from(`key ${n}`),
  clientCa: ca === undefined ? undefined : Buffer.from(ca),
});

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

describe("PemCertificateProvider", () => {
  it("tells a new listener the current bytes on the next tick, then every update", async () => {
    const p = new PemCertificateProvider(files(1));
    const heard: string[] = [];
    p.addIdentityCertificateListener((u) => heard.push(String(u?.certificate)));
    // Not at once: grpc-js registers its listener before it starts watching.
    expect(heard).toEqual([]);
    await nextTick();
    p.update(files(2));
    expect(heard).toEqual(["cert 1", "cert 2"]);
  });

  it("replaces the client CA only when it has one and the update names one", async () => {
    const withCa = new PemCertificateProvider(files(1, "ca 1"));
    const without = new PemCertificateProvider(files(1));
    expect([withCa.hasCa, without.hasCa]).toEqual([true, false]);
    const heard: (string | null)[] = [];
    withCa.addCaCertificateListener((u) => heard.push(u === null ? null : String(u.caCertificate)));
    await nextTick();
    withCa.update(files(2));
    withCa.update(files(3, "ca 3"));
    expect(heard).toEqual(["ca 1", "ca 3"]);
  });

  it("tells a listener removed before the next tick nothing", async () => {
    const p = new PemCertificateProvider(files(1));
    const heard: unknown[] = [];
    const l = (u: unknown) => heard.push(u);
    p.addIdentityCertificateListener(l);
    p.removeIdentityCertificateListener(l);
    await nextTick();
    p.update(files(2));
    expect(heard).toEqual([]);
  });
});

describe("rotateTls", () => {
  it("refuses files that do not load, with the reason", () => {
    expect(checkTls(files(1))).toEqual(expect.any(String));
    expect(rotateTls(ServerCredentials.createInsecure(), files(1))).toEqual(expect.any(String));
  });
});

describe("serverCredentials", () => {
  it("refuses TLS when Node's minimum TLS version is below 1.2 (the contexts would take it)", () => {
    const before = nodeTls.DEFAULT_MIN_VERSION;
    try {
      nodeTls.DEFAULT_MIN_VERSION = "TLSv1";
      expect(() => serverCredentials(files(1))).toThrow(/minimum TLS version .* it is TLSv1 /);
      expect(serverCredentials(undefined)._isSecure()).toBe(false);
    } finally {
      nodeTls.DEFAULT_MIN_VERSION = before;
    }
    expect(serverCredentials(files(1))._isSecure()).toBe(true);
  });
});
