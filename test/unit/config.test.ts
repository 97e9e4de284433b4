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
});
