/**
 * The PromQL the monitoring files hold (deploy/grafana/icmpfwd.json panel targets,
 * deploy/prometheus/alerts.yml expressions) and what each selects, parsed with Prometheus' own
 * PromQL grammar (@prometheus-io/lezer-promql). Shared by the unit tests and the e2e check
 * against a live /metrics.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parser } from "@prometheus-io/lezer-promql";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface GrafanaDashboard {
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string }[] };
}

/** Grafana's variables, given values Prometheus accepts (the queries as Grafana sends them). */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: "1m",
  $instance: ".*",
};

export function withGrafanaVariables(expr: string): string {
  return Object.entries(GRAFANA_VARIABLES).reduce((q, [k, v]) => q.split(k).join(v), expr);
}

export function dashboardQueries(dash: GrafanaDashboard): string[] {
  return dash.panels.flatMap((p) => p.targets ?? []).map((t) => withGrafanaVariables(t.expr));
}

export function loadDashboard(): GrafanaDashboard {
  return JSON.parse(
    readFileSync(`${ROOT}/deploy/grafana/icmpfwd.json`, "utf8"),
  ) as GrafanaDashboard;
}

export function alertExpressions(): { alert: string; expr: string }[] {
  const file = parse(readFileSync(`${ROOT}/deploy/prometheus/alerts.yml`, "utf8")) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  return file.groups.flatMap((g) => g.rules.map((r) => ({ alert: r.alert, expr: r.expr })));
}

/** One series selector in a query: the metric and the label names it matches on. */
export interface Selector {
  metric: string;
  labels: string[];
}

/** The series selectors of a PromQL expression; throws when it does not parse. */
export function selectors(expr: string): Selector[] {
  const tree = parser.parse(expr);
  const out: Selector[] = [];
  let error = -1;
  const cursor = tree.cursor();
  do {
    if (cursor.type.isError && error < 0) error = cursor.from;
    if (cursor.name !== "VectorSelector") continue;
    const node = cursor.node;
    const id = node.getChild("Identifier");
    if (id === null) continue;
    const labels: string[] = [];
    const matchers = node.getChild("LabelMatchers");
    if (matchers !== null) {
      const c = matchers.cursor();
      do {
        if (c.name === "LabelName") labels.push(expr.slice(c.from, c.to));
      } while (c.next() && c.from < matchers.to);
    }
    out.push({ metric: expr.slice(id.from, id.to), labels });
  } while (cursor.next());
  if (error >= 0) throw new Error(`PromQL does not parse at ${error}: ${expr}`);
  return out;
}
