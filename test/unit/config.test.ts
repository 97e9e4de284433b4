import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  envName,
  fromEnvironment,
  fromFile,
  fromFlags,
  isLoopbackListen,
  OPTIONS,
  resolveConfig,
} from "../../src/config.js";

describe("configuration", () => {
  it("defaults to DESIGN.md §4: icmpfwd0, MTU 1500, 198.18.0.1/24 + fd00:1::1/64 kernel side", () => {
    const c = resolveConfig();
    expect(c.tun).toBe("icmpfwd0");
    expect(c.mtu).toBe(1500);
    expect(c.kernelAddresses).toEqual(["198.18.0.1/24", "fd00:1::1/64"]);
    expect(c.addresses).toEqual(["198.18.0.2/24", "fd00:1::2/64", "fe80::2/64"]);
    expect(c.defaultTtl).toBe(64);
    expect(c.promiscuous).toBe(false);
    expect(c.tunAttach).toBeUndefined();
  });

  it("names every option's environment variable ICMPFWD_<SNAKE_CASE>", () => {
    expect(envName("defaultTtl")).toBe("ICMPFWD_DEFAULT_TTL");
    expect(envName("tunAttach")).toBe("ICMPFWD_TUN_ATTACH");
  });

  it("lets flags override the environment, and the environment override the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "icmpfwd-cfg-"));
    const file = join(dir, "c.json");
    writeFileSync(file, JSON.stringify({ defaultTtl: 10, mtu: 9000, tun: "fromfile" }));
    const c = resolveConfig(
      fromFile(file),
      fromEnvironment({ ICMPFWD_DEFAULT_TTL: "20", ICMPFWD_MTU: "2000" }),
      fromFlags({ defaultTtl: "30" }),
    );
    expect(c.defaultTtl).toBe(30);
    expect(c.mtu).toBe(2000);
    expect(c.tun).toBe("fromfile");
  });

  it("reads lists from repeated flags and comma-separated variables", () => {
    expect(resolveConfig(fromFlags({ routes: ["198.18.128.0/17", "fd00:2::/64"] })).routes).toEqual(
      ["198.18.128.0/17", "fd00:2::/64"],
    );
    expect(
      resolveConfig(fromEnvironment({ ICMPFWD_ROUTES: "198.18.128.0/17, fd00:2::/64" })).routes,
    ).toHaveLength(2);
  });

  it("rejects an out-of-range value naming the field, its flag and its variable", () => {
    expect(() => resolveConfig(fromFlags({ defaultTtl: "300" }))).toThrow(
      /defaultTtl \(--default-ttl, ICMPFWD_DEFAULT_TTL\)/,
    );
  });

  it("rejects a malformed address naming the list entry", () => {
    expect(() => resolveConfig({ addresses: ["198.18.0.2/24", "nonsense"] })).toThrow(
      /addresses .*\[1\]/,
    );
  });

  it("rejects a non-numeric number from the environment", () => {
    expect(() => fromEnvironment({ ICMPFWD_MTU: "big" })).toThrow(ConfigError);
  });

  it("rejects an unknown key in the config file", () => {
    expect(() => resolveConfig({ defaultTTL: 5 })).toThrow(/unknown option "defaultTTL"/);
  });

  it("rejects an MTU below the IPv6 minimum", () => {
    expect(() => resolveConfig({ mtu: 1000 })).toThrow(/mtu .*1280/);
  });

  it("listens on loopback by default (gRPC and metrics)", () => {
    const c = resolveConfig();
    expect(c.listen).toBe("127.0.0.1:50051");
    expect(c.metricsListen).toBe("127.0.0.1:9464");
    expect(isLoopbackListen(c.listen)).toBe(true);
  });

  it("bounds the decision histogram's session labels: 100 by default, 0–10000", () => {
    expect(resolveConfig().metricsMaxSessions).toBe(100);
    expect(resolveConfig(fromFlags({ metricsMaxSessions: "0" })).metricsMaxSessions).toBe(0);
    expect(() => resolveConfig({ metricsMaxSessions: -1 })).toThrow(/metricsMaxSessions/);
  });

  it("rejects a bad prefix naming the field and the entry", () => {
    expect(() => resolveConfig({ routes: ["198.18.0.0/33"] })).toThrow(
      /routes \(--route, ICMPFWD_ROUTES\)\[0\]: expected a network prefix/,
    );
    expect(() => resolveConfig({ kernelAddresses: ["198.18.0.1/24", "fd00:1::1/129"] })).toThrow(
      /kernelAddresses \(--kernel-address, ICMPFWD_KERNEL_ADDRESSES\)\[1\]: expected ADDRESS\/PREFIX/,
    );
  });

  it("rejects deadline 0 naming the field", () => {
    expect(() => resolveConfig(fromEnvironment({ ICMPFWD_DEADLINE: "0" }))).toThrow(
      "invalid configuration: deadline (--deadline, ICMPFWD_DEADLINE): Number must be greater than or equal to 1",
    );
  });

  it("rejects an unknown action naming the field", () => {
    expect(() => resolveConfig(fromFlags({ onTimeout: "drop" }))).toThrow(
      "invalid configuration: onTimeout (--on-timeout, ICMPFWD_ON_TIMEOUT): Invalid enum value. Expected 'fallthrough' | 'consume', received 'drop'",
    );
  });

  it("rejects an unreadable certificate, key, CA or authz file naming the field", () => {
    const dir = mkdtempSync(join(tmpdir(), "icmpfwd-cfg-"));
    const cert = join(dir, "cert.pem");
    writeFileSync(cert, "x");
    expect(() => resolveConfig({ tlsCert: join(dir, "missing.pem"), tlsKey: cert })).toThrow(
      `invalid configuration: tlsCert (--tls-cert, ICMPFWD_TLS_CERT): cannot read ${join(dir, "missing.pem")}: ENOENT`,
    );
    expect(() => resolveConfig({ tlsCert: cert, tlsKey: dir })).toThrow(
      `invalid configuration: tlsKey (--tls-key, ICMPFWD_TLS_KEY): ${dir} is a directory`,
    );
    expect(() =>
      resolveConfig({ tlsCert: cert, tlsKey: cert, tlsClientCa: "/nonexistent/ca.pem" }),
    ).toThrow(
      /tlsClientCa \(--tls-client-ca, ICMPFWD_TLS_CLIENT_CA\): cannot read \/nonexistent\/ca\.pem: ENOENT/,
    );
    expect(() => resolveConfig({ authz: "/nonexistent/authz.json" })).toThrow(
      /authz \(--authz, ICMPFWD_AUTHZ\): cannot read/,
    );
    expect(resolveConfig({ tlsCert: cert, tlsKey: cert }).tlsCert).toBe(cert);
  });

  it("rejects an unknown user or group naming the field", () => {
    expect(() => resolveConfig({ user: "no-such-user-icmpfwd" })).toThrow(
      'invalid configuration: user (--user, ICMPFWD_USER): no user named "no-such-user-icmpfwd"',
    );
    expect(() => resolveConfig({ group: "no-such-group-icmpfwd" })).toThrow(
      'invalid configuration: group (--group, ICMPFWD_GROUP): no group named "no-such-group-icmpfwd"',
    );
    expect(resolveConfig({ user: "nobody", group: "65534" })).toMatchObject({
      user: "nobody",
      group: "65534",
    });
  });

  it("refuses a TCP listener that is not loopback without credentials, unless --allow-unauthenticated", () => {
    expect(() => resolveConfig({ listen: "0.0.0.0:50051" })).toThrow(
      /listen \(--listen, ICMPFWD_LISTEN\): a TCP listener that is not loopback needs credentials/,
    );
    expect(resolveConfig({ listen: "0.0.0.0:50051", allowUnauthenticated: true }).listen).toBe(
      "0.0.0.0:50051",
    );
    // Credentials of any kind lift it (a token over plaintext still needs --insecure-token).
    expect(
      resolveConfig({ listen: "0.0.0.0:50051", token: "t".repeat(16), insecureToken: true }).listen,
    ).toBe("0.0.0.0:50051");
    // Loopback and unix sockets need nothing: callers there are told apart by their uid.
    expect(resolveConfig({ listen: "127.0.0.1:50051" }).allowUnauthenticated).toBe(false);
    expect(resolveConfig({ listen: "unix:/run/icmpfwd.sock" }).allowUnauthenticated).toBe(false);
  });

  it("validates every option: a bad value of each is refused with a message naming it", () => {
    const bad: Record<string, unknown> = {
      tun: "no spaces allowed",
      tunAttach: "x".repeat(16),
      mtu: 1279,
      kernelAddresses: ["198.18.0.1"],
      addresses: [],
      routes: ["nonsense"],
      promiscuous: "yes",
      temporaryReply: 1,
      configureKernel: "on",
      defaultTtl: 0,
      icmpRateLimit: 0,
      icmpBurst: 0.5,
      ipv4ReassemblyTimeoutMs: 0,
      ipv6ReassemblyTimeoutMs: 3_600_001,
      reassemblyHighThreshold: 0,
      reassemblyLowThreshold: -1,
      maxReassembledDatagramSize: 100,
      pcap: "",
      statsFile: "",
      statsIntervalMs: 10,
      logLevel: "verbose",
      logFormat: "color",
      listen: "localhost",
      deadline: 10_001,
      onTimeout: "reply",
      onNoClient: "drop",
      onOverload: "",
      onDisconnect: "REPLY",
      drainTimeout: -1,
      maxInFlight: 0,
      maxBatch: 4097,
      syntheticWindow: -5,
      observerQueue: 0,
      maxConnections: 0,
      helloTimeout: 99,
      token: "short",
      insecureToken: "true",
      allowUnauthenticated: "true",
      tlsCert: "/nonexistent/cert.pem",
      tlsKey: "/nonexistent/key.pem",
      tlsClientCa: "/nonexistent/ca.pem",
      authz: "/nonexistent/authz.json",
      user: "no-such-user-icmpfwd",
      group: "no-such-group-icmpfwd",
      healthListen: "9465",
      metricsListen: "9464",
      metricsMaxSessions: 10_001,
      tracing: "jaeger",
      traceSampleRatio: 1.5,
    };
    expect(Object.keys(bad).sort()).toEqual(OPTIONS.map((o) => o.key).sort());
    for (const o of OPTIONS) {
      const flag = o.flag.replace(/[-]/g, "\\-");
      expect(() => resolveConfig({ [o.key]: bad[o.key] }), o.key).toThrow(
        new RegExp(`${o.key} \\(${flag}, ${envName(o.key)}\\)`),
      );
    }
  });
});
