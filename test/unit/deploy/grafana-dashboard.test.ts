/**
 * deploy/grafana/icmpfwd.json: a Grafana dashboard (JSON model, schema 39) over the icmpfwd
 * metrics. Its PromQL is parsed with Prometheus' grammar here and checked by promtool in
 * prometheus.test.ts; every metric it names is found on a live service by
 * test/e2e/metrics-names.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  alertExpressions,
  loadDashboard,
  selectors,
  withGrafanaVariables,
} from "./monitoring-queries.js";

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { expr: string; refId: string }[];
}

const dash = loadDashboard() as unknown as {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string }[] };
};
const panels = dash.panels.filter((p) => p.type !== "row");
/** The metrics a panel's queries select. */
const metricsOf = (title: string): string[] => {
  const p = panels.find((x) => x.title === title);
  if (p === undefined) throw new Error(`no panel ${title}`);
  const all = (p.targets ?? []).flatMap((t) => selectors(withGrafanaVariables(t.expr)));
  return [...new Set(all.map((s) => s.metric))];
};

describe("Grafana dashboard (deploy/grafana/icmpfwd.json)", () => {
  it("is one dashboard, uid icmpfwd, with a Prometheus data source and a replica variable", () => {
    expect(dash.uid).toBe("icmpfwd");
    expect(dash.title).toBe("icmpfwd");
    expect(dash.schemaVersion).toBe(39);
    expect(dash.templating.list.map((v) => `${v.name}:${v.type}`)).toEqual([
      "datasource:datasource",
      "instance:query",
    ]);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: `$${"{datasource}"}` });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.expr, p.title).toContain('instance=~"$instance"');
    }
  });

  it("shows requests by outcome and cause, decision latency percentiles, sessions, in-flight, netstack drops and the runtime", () => {
    expect(metricsOf("Requests by outcome and cause")).toEqual(["icmpfwd_requests_total"]);
    expect(metricsOf("Decision latency percentiles")).toEqual([
      "icmpfwd_decision_duration_seconds_bucket",
    ]);
    expect(
      panels
        .find((p) => p.title === "Decision latency percentiles")
        ?.targets?.map((t) => /histogram_quantile\((0\.\d+)/.exec(t.expr)?.[1]),
    ).toEqual(["0.5", "0.9", "0.99"]);
    expect(metricsOf("Sessions and requests in flight")).toEqual([
      "icmpfwd_sessions",
      "icmpfwd_inflight",
    ]);
    expect(metricsOf("Netstack drops by reason")).toEqual(["icmpfwd_netstack_drops_total"]);
    expect(metricsOf("Event-loop delay")).toEqual([
      "nodejs_eventloop_delay_p50",
      "nodejs_eventloop_delay_p99",
      "nodejs_eventloop_delay_max",
    ]);
    expect(metricsOf("GC time per second by kind")).toEqual(["v8js_gc_duration_sum"]);
    expect(metricsOf("Memory: RSS and V8 heap used")).toEqual([
      "process_memory_usage",
      "v8js_memory_heap_used",
    ]);
    expect(metricsOf("CPU")).toEqual(["process_cpu_time_total"]);
    expect(metricsOf("Build")).toEqual(["icmpfwd_build_info"]);
  });

  it("lays the panels out on Grafana's 24-column grid without overlaps", () => {
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dash.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
  });
});

describe("PromQL selectors (Prometheus' grammar)", () => {
  it("finds the metric and matcher labels of each selector, not grouping labels or functions", () => {
    expect(
      selectors(
        'histogram_quantile(0.9, sum by (le, session) (rate(a_bucket{instance=~"x", cause="timeout"}[5m]))) / on (instance) group_left max by (instance) (b) > 0',
      ),
    ).toEqual([
      { metric: "a_bucket", labels: ["instance", "cause"] },
      { metric: "b", labels: [] },
    ]);
  });

  it("refuses an expression that does not parse", () => {
    expect(() => selectors("sum by (instance (a)")).toThrow(/does not parse/);
  });

  it("finds a metric in every alert expression", () => {
    expect(
      Object.fromEntries(
        alertExpressions().map((a) => [a.alert, selectors(a.expr).map((s) => s.metric)]),
      ),
    ).toEqual({
      IcmpfwdNoDecisionClient: ["icmpfwd_sessions"],
      IcmpfwdDecisionsTimingOut: ["icmpfwd_requests_total", "icmpfwd_requests_total"],
      IcmpfwdFallthroughOnOverload: ["icmpfwd_requests_total"],
      IcmpfwdNetstackDropsRising: ["icmpfwd_netstack_drops_total"],
      IcmpfwdEventLoopLag: ["nodejs_eventloop_delay_p99"],
    });
  });
});
