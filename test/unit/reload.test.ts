/**
 * The reload plan without a network (reload.ts): what may change live, the typed diff,
 * refusals.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, resolveConfig } from "../../src/config.js";
import { isRefusal, planReload, type ReloadPlan, type ReloadRefusal } from "../../src/reload.js";
import type { SecurityOptions } from "../../src/service/index.js";

const base = (o: Record<string, unknown> = {}): Config => resolveConfig(o);
// Files the configuration names must be readable (config.ts checks); their contents come
// from each test's loader.
const files = mkdtempSync(join(tmpdir(), "icmpfwd-reload-"));
const CERT = join(files, "c.pem");
const KEY = join(files, "k.pem");
const AUTHZ = join(files, "authz.json");
for (const f of [CERT, KEY, AUTHZ]) writeFileSync(f, "");
const noFiles = (c: Config): SecurityOptions => ({ token: c.token });

describe("reload plan", () => {
  it("a changed deadline and default action are live changes, listed as a typed diff", () => {
    const p = planReload(
      { config: base(), security: {} },
      base({ deadline: 250, onTimeout: "consume" }),
      noFiles,
    ) as ReloadPlan;
    expect(p.changes).toEqual([
      { key: "deadline", from: 100, to: 250, contentsChanged: false },
      { key: "onTimeout", from: "fallthrough", to: "consume", contentsChanged: false },
    ]);
  });

  it("tokens are redacted in the diff", () => {
    const p = planReload(
      { config: base({ token: "a".repeat(16) }), security: {} },
      base({ token: "b".repeat(16) }),
      noFiles,
    ) as ReloadPlan;
    expect(p.changes).toEqual([
      { key: "token", from: "(redacted)", to: "(redacted)", contentsChanged: false },
    ]);
  });

  it("an option only a restart applies refuses the whole reload, naming it", () => {
    const r = planReload(
      { config: base(), security: {} },
      base({ mtu: 9000, deadline: 5 }),
      noFiles,
    );
    expect(r).toEqual({
      kind: "needsRestart",
      reason: "mtu: changed from 1500 to 9000, which only a restart applies",
    });
  });

  it("addresses changed in the file point at the run-time command", () => {
    const r = planReload(
      { config: base(), security: {} },
      base({ addresses: ["198.18.0.2/24"] }),
      noFiles,
    ) as ReloadRefusal;
    expect(r.reason).toMatch(
      /^addresses: changed from .* which only a restart applies \(at run time: icmpfwd addr add\|del\)$/,
    );
  });

  it("turning TLS on needs a restart", () => {
    const r = planReload(
      { config: base(), security: {} },
      base({ tlsCert: CERT, tlsKey: KEY }),
      noFiles,
    ) as ReloadRefusal;
    expect(r.reason).toBe(
      "tlsCert: turning TLS on needs a restart (rotating certificates does not)",
    );
  });

  it("a certificate rotated under the same path is a change with new contents", () => {
    const c = base({ tlsCert: CERT, tlsKey: KEY });
    const p = planReload(
      { config: c, security: { tls: { cert: Buffer.from("old"), key: Buffer.from("k") } } },
      c,
      () => ({ tls: { cert: Buffer.from("new"), key: Buffer.from("k") } }),
    ) as ReloadPlan;
    expect(p.changes).toEqual([{ key: "tlsCert", from: CERT, to: CERT, contentsChanged: true }]);
  });

  it("a file that does not load refuses the reload with its error", () => {
    const r = planReload({ config: base(), security: {} }, base({ authz: AUTHZ }), () => {
      throw new Error("--authz: cannot read /nope.json");
    });
    expect(isRefusal(r) && r).toEqual({
      kind: "invalid",
      reason: "--authz: cannot read /nope.json",
    });
  });
});
