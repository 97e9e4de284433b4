/**
 * The reload plan without a network (src/daemon/reload.ts): what may change live, the typed
 * diff, refusals.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, resolveConfig } from "../../../src/config.js";
import {
  isRefusal,
  planReload,
  type ReloadPlan,
  type ReloadRefusal,
  settingsOf,
} from "../../../src/daemon/reload.js";
import type { Reloadable } from "../../../src/daemon/reloadable.js";
import { reloadablesOf } from "../../../src/daemon/root.js";

const base = (o: Record<string, unknown> = {}): Config => resolveConfig(o);
// Files the configuration names must be readable (config.ts checks); their contents come
// from each test's loader.
const files = mkdtempSync(join(tmpdir(), "icmpfwd-reload-"));
const CERT = join(files, "c.pem");
const KEY = join(files, "k.pem");
const AUTHZ = join(files, "authz.json");
for (const f of [CERT, KEY, AUTHZ]) writeFileSync(f, "");
// The daemon's own reloadable parts; a plan only reads their keys and settings (apply is not
// called), so they need no running service.
const PARTS = reloadablesOf(null as never, null as never, null as never);
/** The parts with the TLS files' contents coming from `load`. */
const tlsFrom = (load: (c: Config) => unknown): Reloadable[] =>
  PARTS.map((p) => (p.name === "tls" ? { ...p, settings: load } : p));
const running = (config: Config, parts: Reloadable[] = PARTS) => ({
  config,
  settings: settingsOf(parts, config),
});

describe("reload plan", () => {
  it("a changed deadline and default action are live changes, listed as a typed diff", () => {
    const p = planReload(
      running(base()),
      base({ deadline: 250, onTimeout: "consume" }),
      PARTS,
    ) as ReloadPlan;
    expect(p.changes).toEqual([
      { key: "deadline", from: 100, to: 250, contentsChanged: false },
      { key: "onTimeout", from: "fallthrough", to: "consume", contentsChanged: false },
    ]);
  });

  it("tokens are redacted in the diff", () => {
    const p = planReload(
      running(base({ token: "a".repeat(16) })),
      base({ token: "b".repeat(16) }),
      PARTS,
    ) as ReloadPlan;
    expect(p.changes).toEqual([
      { key: "token", from: "(redacted)", to: "(redacted)", contentsChanged: false },
    ]);
  });

  it("an option only a restart applies refuses the whole reload, naming it", () => {
    const r = planReload(running(base()), base({ mtu: 9000, deadline: 5 }), PARTS);
    expect(r).toEqual({
      kind: "needsRestart",
      reason: "mtu: changed from 1500 to 9000, which only a restart applies",
    });
  });

  it("addresses changed in the file point at the run-time command", () => {
    const r = planReload(
      running(base()),
      base({ addresses: ["198.18.0.2/24"] }),
      PARTS,
    ) as ReloadRefusal;
    expect(r.reason).toMatch(
      /^addresses: changed from .* which only a restart applies \(at run time: icmpfwd addr add\|del\)$/,
    );
  });

  it("turning TLS on needs a restart", () => {
    const r = planReload(
      running(base()),
      base({ tlsCert: CERT, tlsKey: KEY }),
      PARTS,
    ) as ReloadRefusal;
    expect(r.reason).toBe(
      "tlsCert: turning TLS on needs a restart (rotating certificates does not)",
    );
  });

  it("a certificate rotated under the same path is a change with new contents", () => {
    const c = base({ tlsCert: CERT, tlsKey: KEY });
    const p = planReload(
      running(
        c,
        tlsFrom(() => ({ tlsCert: Buffer.from("old"), tlsKey: Buffer.from("k") })),
      ),
      c,
      tlsFrom(() => ({ tlsCert: Buffer.from("new"), tlsKey: Buffer.from("k") })),
    ) as ReloadPlan;
    expect(p.changes).toEqual([{ key: "tlsCert", from: CERT, to: CERT, contentsChanged: true }]);
  });

  it("a file that does not load refuses the reload with its error", () => {
    const r = planReload(
      running(base()),
      base({ authz: AUTHZ }),
      PARTS.map((p) =>
        p.name === "authenticator"
          ? {
              ...p,
              settings: () => {
                throw new Error("--authz: cannot read /nope.json");
              },
            }
          : p,
      ),
    );
    expect(isRefusal(r) && r).toEqual({
      kind: "invalid",
      reason: "--authz: cannot read /nope.json",
    });
  });
});
