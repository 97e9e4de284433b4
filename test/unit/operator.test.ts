/**
 * The operator pieces without a network: the reload plan (what may change live, the typed
 * diff, refusals), run-time address and route changes against a recording kernel side, the
 * decision-latency percentiles, and `icmpfwd top`'s model and drop reasons.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DROP_COUNTERS,
  renderLine,
  sparkline,
  TopModel,
  type TopSample,
} from "../../src/cli/top.js";
import { type Config, resolveConfig } from "../../src/config.js";
import {
  isRefusal,
  planReload,
  type ReloadPlan,
  type ReloadRefusal,
  settingsOf,
} from "../../src/daemon/reload.js";
import type { Reloadable } from "../../src/daemon/reloadable.js";
import { reloadablesOf } from "../../src/daemon/root.js";
import { Subnet } from "../../src/netstack/address.js";
import { flattenStats } from "../../src/netstack/stats.js";
import { DecisionLatencies, percentile } from "../../src/service/decision-latency.js";
import type { ServiceError } from "../../src/service/errors.js";
import { type NetworkChange, NetworkControl } from "../../src/service/network.js";
import { netstackDrops } from "../../src/telemetry/metrics.js";
import { testStack } from "../helpers/stack.js";

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

describe("run-time addresses and routes", () => {
  function control(managed = true, fail: string | null = null) {
    const ts = testStack();
    const commands: string[] = [];
    const n = new NetworkControl(ts.stack, 1, {
      device: "tun9",
      managed,
      coveredSubnets: [Subnet.parse("198.18.0.0/24") as Subnet],
      ownedRoutes: [],
      run: async (cmds) => {
        commands.push(...cmds);
        return fail;
      },
    });
    return { n, commands, stack: ts.stack };
  }
  const routes = (c: NetworkChange | ServiceError): string[] =>
    "network" in c
      ? c.network.routes.map((r) => `${r.destination}${r.kernelRoute ? " kernel" : ""}`)
      : [];

  it("an address outside the kernel's subnets gets an on-link route and a kernel route", async () => {
    const { n, commands } = control();
    const r = await n.addAddress("198.18.5.2/24", 0);
    expect(routes(r)).toContain("198.18.5.0/24 kernel");
    expect(commands).toEqual(["route add 198.18.5.0/24 dev tun9"]);
    const d = await n.removeAddress("198.18.5.2", 0);
    expect(routes(d)).not.toContain("198.18.5.0/24");
    expect(commands).toEqual([
      "route add 198.18.5.0/24 dev tun9",
      "route del 198.18.5.0/24 dev tun9",
    ]);
  });

  it("an address inside a subnet the kernel already routes needs no kernel route", async () => {
    const { n, commands } = control();
    expect(await n.addAddress("198.18.0.9/24", 0)).toMatchObject({ kernelUpdated: false });
    expect(commands).toEqual([]);
  });

  it("without the kernel side (--tun-attach) only the netstack changes", async () => {
    const { n, commands } = control(false);
    expect(await n.addRoute("198.18.64.0/18", 0)).toMatchObject({ kernelUpdated: false });
    expect(commands).toEqual([]);
  });

  it("a kernel failure undoes the netstack change", async () => {
    const { n, stack } = control(true, "ip(8) failed: RTNETLINK answers: File exists");
    expect(await n.addRoute("198.18.64.0/18", 0)).toEqual({
      kind: "internal",
      message:
        "destination: 198.18.64.0/18: the kernel route failed: ip(8) failed: RTNETLINK answers: File exists",
    });
    expect(stack.routeTable().map((r) => r.destination.toString())).not.toContain("198.18.64.0/18");
  });

  it("bad input names the field", async () => {
    const { n } = control();
    expect(await n.addAddress("198.18.5.2", 0)).toEqual({
      kind: "invalidArgument",
      message: 'address: "198.18.5.2" is not ADDRESS/PREFIX (e.g. 198.18.5.2/24)',
    });
    expect(await n.addAddress("224.0.0.5/24", 0)).toEqual({
      kind: "invalidArgument",
      message: "address: 224.0.0.5/24 is not a unicast address outside the loopback range",
    });
    expect(await n.addRoute("198.18.0.0/33", 0)).toEqual({
      kind: "invalidArgument",
      message: 'destination: "198.18.0.0/33" is not a prefix (e.g. 198.18.128.0/17)',
    });
    expect(await n.addRoute("198.18.64.0/18", 7)).toEqual({
      kind: "notFound",
      message: "nic: no NIC 7",
    });
    expect(await n.addAddress("198.18.0.2/24", 0)).toEqual({
      kind: "alreadyExists",
      message: "address: 198.18.0.2 is already on NIC 1",
    });
  });

  it("promiscuous on sets promiscuous and spoofing, off clears both", async () => {
    const { n, stack } = control();
    await n.setPromiscuous(true, 0);
    expect([stack.nic(1)?.promiscuous, stack.nic(1)?.spoofing]).toEqual([true, true]);
    await n.setPromiscuous(false, 0);
    expect([stack.nic(1)?.promiscuous, stack.nic(1)?.spoofing]).toEqual([false, false]);
  });
});

describe("decision latency", () => {
  it("nearest-rank percentiles over the window only", () => {
    let now = 0;
    const l = new DecisionLatencies(null, () => now);
    for (let i = 1; i <= 100; i++) l.record("s", i);
    now = 20_000;
    l.record("s", 1000);
    expect(l.overall(10_000)).toEqual({ decisions: 1, p50: 1000, p99: 1000, max: 1000 });
    expect(l.overall(30_000)).toMatchObject({ decisions: 101, p50: 51, p99: 100, max: 1000 });
    expect(percentile(new Float64Array(0), 99)).toBe(0);
  });
});

describe("icmpfwd top", () => {
  it("its drop reasons and counters are exactly the metric's", () => {
    const { stack } = testStack();
    // Give every counter a distinct value, then compare sums.
    let i = 1;
    const walk = (o: Record<string, unknown>): void => {
      for (const [k, v] of Object.entries(o)) {
        if (typeof v === "number") o[k] = i++;
        else if (typeof v === "object" && v !== null) walk(v as Record<string, unknown>);
      }
    };
    walk(stack.stats as unknown as Record<string, unknown>);
    const flat = flattenStats(stack.stats);
    const fromTop = Object.fromEntries(
      Object.entries(DROP_COUNTERS).map(([r, names]) => [
        r,
        names.reduce((n, k) => n + (flat[k] as number), 0),
      ]),
    );
    const fromMetric = Object.fromEntries(
      netstackDrops(stack.stats).map(([a, v]) => [a.reason, v]),
    );
    expect(fromTop).toEqual(fromMetric);
  });

  it("rates are deltas over the snapshot interval; the sparkline scales to the largest", () => {
    const m = new TopModel();
    const sample = (atMs: number, requests: number): TopSample => ({
      atMs,
      counters: { "service.requests": requests, "service.outcomes.reply.verdict": requests },
      gauges: { "service.inFlight": 0 },
      sessions: [],
      decisions: null,
    });
    m.push(sample(0, 0));
    const v = m.push(sample(2000, 50));
    expect(v.requests).toEqual({ total: 50, rate: 25 });
    expect(v.outcomes).toEqual([
      { action: "reply", cause: "verdict", value: { total: 50, rate: 25 } },
    ]);
    expect(renderLine(v)).toBe(
      "1970-01-01T00:00:02.000Z requests=50 rate=25.0/s inFlight=0 p50=0.00ms p99=0.00ms sessions=0+0 reply.verdict=50",
    );
    expect(sparkline([0, 1, 2, 4, 8], 5)).toBe("▁▁▂▄█");
  });
});
